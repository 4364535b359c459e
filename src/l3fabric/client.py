"""Client library for the controller's HTTP API, used by the agents, the lab and the demo.

- ``FabricClient``: synchronous calls for /v1 (fabric config, hosts,
  gateways, heartbeats, snapshot, watch) and generic Neutron /v2.0 calls.
  Error bodies become ``ApiError(status, type, message)``. Given several
  controllers (``Controllers``), a call that cannot reach one moves to the
  next; when none answers it raises ``ControllerUnavailable``.
- ``HostStateWatcher``: a thread that keeps an in-memory copy of one host's
  state (snapshot + watch events), resyncs when the server answers 410 or
  after repeated failures of any other kind, moves to the next controller
  when its own is unreachable (resuming from the same revision), backs off
  while none is reachable, and signals every change. The
  agents' reconcile loops are level-triggered: they wait for the signal and
  read ``state()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from l3fabric.controllers import Controllers
from l3fabric.credentials import Credentials
from l3fabric.group_members import GroupMembers
from l3fabric.record_check import admit, admit_fabric, material

log = logging.getLogger(__name__)

# Neutron's URL collection name -> the JSON envelope key of one object.
NEUTRON_SINGULAR = {
    "networks": "network",
    "subnets": "subnet",
    "ports": "port",
    "security-groups": "security_group",
    "security-group-rules": "security_group_rule",
    "routers": "router",
    "floatingips": "floatingip",
}


class ApiError(Exception):
    """The controller answered with an error (a NeutronError body when it could)."""

    def __init__(self, status: int, type_: str, message: str, detail: str = "") -> None:
        super().__init__(f"{status} {type_}: {message}")
        self.status = status
        self.type = type_
        self.message = message
        self.detail = detail


class ResyncRequired(ApiError):
    """The watch revision is older than the controller's history: take a new snapshot."""


class ControllerUnavailable(Exception):
    """The controller could not be reached (connection refused, reset, timed out)."""

    def __init__(self, message: str, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url  # the controller that could not be reached


# Methods a call may repeat on another controller after the request went out:
# the same request twice leaves the same state. A POST (a create) is repeated
# only if it never reached the first controller (the connection failed), or
# when the caller says it is idempotent (a heartbeat): a create retried after
# a reset could be applied twice.
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "OPTIONS"})
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)
# The controller answers but cannot serve now (its store or its Keystone is out
# of reach): another one may, and nothing is wrong with the request.
_UNAVAILABLE = 503

Urls = str | Iterable[str] | Controllers


def _error(response: httpx.Response) -> ApiError:
    """The exception an error answer stands for (from its NeutronError body when it has one)."""
    type_, message, detail = "HTTPError", response.text[:300], ""
    try:
        error = response.json()["NeutronError"]
        type_, message, detail = error["type"], error["message"], error.get("detail", "")
    except (ValueError, KeyError, TypeError):
        pass
    cls = ResyncRequired if response.status_code == 410 else ApiError
    return cls(response.status_code, type_, message, detail)


def _decode(response: httpx.Response) -> Any:
    """The JSON body of a success, or the matching exception."""
    if response.is_success:
        return response.json() if response.content else None
    raise _error(response)


def _watch_params(host: str, since: int | None, timeout: float | None) -> dict[str, Any]:
    params: dict[str, Any] = {"host": host}
    if since is not None:
        params["since"] = since
        params["timeout"] = timeout
    return params


def _drop_none(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


class FabricClient:
    """Synchronous client of the controllers at ``api_url`` (their unversioned roots).

    ``api_url``: one URL, several (a list or ``"URL1,URL2"``), or a shared
    ``Controllers``.
    """

    def __init__(
        self,
        api_url: Urls,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.controllers = Controllers.of(api_url)
        self.timeout = timeout
        creds = credentials or Credentials.from_env()
        self._http = httpx.Client(timeout=timeout, transport=transport, **creds.client_options())

    @property
    def api_url(self) -> str:
        """The controller in use."""
        return self.controllers.current

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FabricClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        """One call; returns the decoded JSON body (None when empty).

        An unreachable controller (or one answering 503) is left for the
        next one, each tried once per call; ``idempotent`` (default: by
        method) allows a repeat after the request was sent.
        """
        repeatable = method.upper() in _IDEMPOTENT if idempotent is None else idempotent
        for attempt in range(1, len(self.controllers) + 1):
            url = self.controllers.current
            last = attempt == len(self.controllers)
            try:
                response = self._http.request(
                    method,
                    url + path,
                    json=json,
                    params=params,
                    timeout=timeout if timeout is not None else self.timeout,
                )
            except httpx.TransportError as exc:
                self.controllers.unreachable(url, repr(exc))
                if last or not (repeatable or isinstance(exc, _NOT_SENT)):
                    raise ControllerUnavailable(f"{url}: {exc!r}", url=url) from exc
                continue
            if response.status_code == _UNAVAILABLE:
                self.controllers.unreachable(url, f"HTTP {_UNAVAILABLE}")
                if repeatable and not last:
                    continue
            return _decode(response)
        raise AssertionError("not reached: the last attempt returns or raises")

    # Fabric configuration -----------------------------------------------------

    def get_fabric(self) -> dict[str, Any]:
        return self.request("GET", "/v1/fabric")

    def set_fabric(self, config: dict[str, Any]) -> dict[str, Any]:
        """Replace the fabric configuration (omitted fields take their defaults)."""
        return self.request("PUT", "/v1/fabric", json=config)

    def set_quota(self, project_id: str, **limits: int) -> dict[str, Any]:
        """Set a project's quotas (admin), e.g. ``port=-1`` for no limit."""
        return self.request("PUT", f"/v2.0/quotas/{project_id}", json={"quota": limits})

    # Hosts ----------------------------------------------------------------------

    def register_host(
        self,
        name: str,
        *,
        router_id: str,
        address: str,
        asn: int | None = None,
        peers: list[dict[str, Any]] | None = None,
        rack: str | None = None,
    ) -> dict[str, Any]:
        body = _drop_none(router_id=router_id, address=address, asn=asn, peers=peers, rack=rack)
        return self.request("PUT", f"/v1/hosts/{name}", json=body)

    def get_host(self, name: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/hosts/{name}")

    def list_hosts(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/hosts")["hosts"]

    def delete_host(self, name: str) -> None:
        self.request("DELETE", f"/v1/hosts/{name}")

    def heartbeat(
        self,
        host: str,
        ports: dict[str, str] | None = None,
        bgp: list[dict[str, Any]] | None = None,
        agent: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Report liveness, each local port's status and the BGP sessions."""
        body = {"ports": ports or {}, "bgp": bgp or [], "agent": agent or {}}
        return self.request("POST", f"/v1/hosts/{host}/heartbeat", json=body, idempotent=True)

    # Gateways -------------------------------------------------------------------

    def register_gateway(
        self,
        name: str,
        *,
        router_id: str,
        fabric_addresses: list[str],
        asn: int | None = None,
        upstream: list[dict[str, Any]] | None = None,
        snat_address: str | None = None,
    ) -> dict[str, Any]:
        body = _drop_none(
            router_id=router_id,
            fabric_addresses=fabric_addresses,
            asn=asn,
            upstream=upstream,
            snat_address=snat_address,
        )
        return self.request("PUT", f"/v1/gateways/{name}", json=body)

    def get_gateway(self, name: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/gateways/{name}")

    def list_gateways(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/gateways")["gateways"]

    def delete_gateway(self, name: str) -> None:
        self.request("DELETE", f"/v1/gateways/{name}")

    def gateway_heartbeat(
        self,
        name: str,
        bgp: list[dict[str, Any]] | None = None,
        nat: dict[str, Any] | None = None,
        agent: dict[str, Any] | None = None,
        anycast: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body = {"bgp": bgp or [], "nat": nat or {}, "agent": agent or {}, "anycast": anycast or {}}
        return self.request("POST", f"/v1/gateways/{name}/heartbeat", json=body, idempotent=True)

    # Watch ----------------------------------------------------------------------

    def snapshot(self, host: str) -> dict[str, Any]:
        """The full state of ``host`` and the revision to watch from."""
        return self.request("GET", "/v1/watch", params=_watch_params(host, None, None))

    def watch(self, host: str, since: int, timeout: float = 25.0) -> dict[str, Any]:
        """Long-poll for events after ``since``; raises ResyncRequired on 410."""
        return self.request(
            "GET",
            "/v1/watch",
            params=_watch_params(host, since, timeout),
            timeout=timeout + self.timeout,
        )

    # Anycast groups ---------------------------------------------------------------

    def create_anycast(
        self,
        *,
        name: str,
        subnet_id: str,
        address: str | None = None,
        members: list[str] | None = None,
        health_check: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Reserve an address on ``subnet_id`` for a new group (see docs/anycast.md)."""
        body = _drop_none(
            name=name,
            subnet_id=subnet_id,
            address=address,
            members=members,
            health_check=health_check,
        )
        return self.request("POST", "/v1/anycast", json=body)

    def list_anycast(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/anycast")["anycast"]

    def get_anycast(self, anycast_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/anycast/{anycast_id}")

    def update_anycast(self, anycast_id: str, **attrs: Any) -> dict[str, Any]:
        """Change ``name``, ``members`` (the whole new list) or ``health_check``."""
        return self.request("PUT", f"/v1/anycast/{anycast_id}", json=attrs)

    def delete_anycast(self, anycast_id: str) -> None:
        self.request("DELETE", f"/v1/anycast/{anycast_id}")

    def add_anycast_member(self, anycast_id: str, port_id: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/anycast/{anycast_id}/members", json={"port_id": port_id})

    def remove_anycast_member(self, anycast_id: str, port_id: str) -> dict[str, Any]:
        return self.request("DELETE", f"/v1/anycast/{anycast_id}/members/{port_id}")

    def report_anycast_status(
        self, anycast_id: str, host: str, members: dict[str, str]
    ) -> dict[str, Any]:
        """A host agent's verdicts on its local members: ``{port_id: "healthy"|"unhealthy"}``."""
        return self.request(
            "POST",
            f"/v1/anycast/{anycast_id}/status",
            json={"host": host, "members": members},
            idempotent=True,
        )

    # Neutron (/v2.0) --------------------------------------------------------------

    def create(self, collection: str, attrs: dict[str, Any]) -> dict[str, Any]:
        one = NEUTRON_SINGULAR[collection]
        return self.request("POST", f"/v2.0/{collection}", json={one: attrs})[one]

    def get(self, collection: str, object_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v2.0/{collection}/{object_id}")[NEUTRON_SINGULAR[collection]]

    def update(self, collection: str, object_id: str, attrs: dict[str, Any]) -> dict[str, Any]:
        one = NEUTRON_SINGULAR[collection]
        return self.request("PUT", f"/v2.0/{collection}/{object_id}", json={one: attrs})[one]

    def delete(self, collection: str, object_id: str) -> None:
        self.request("DELETE", f"/v2.0/{collection}/{object_id}")

    def list(self, collection: str, **filters: Any) -> list[dict[str, Any]]:
        """Objects matching ``filters`` (a list value means any of them)."""
        key = NEUTRON_SINGULAR[collection] + "s"
        return self.request("GET", f"/v2.0/{collection}", params=filters or None)[key]

    def create_network(self, **attrs: Any) -> dict[str, Any]:
        return self.create("networks", attrs)

    def create_subnet(self, **attrs: Any) -> dict[str, Any]:
        return self.create("subnets", attrs)

    def create_port(self, **attrs: Any) -> dict[str, Any]:
        return self.create("ports", attrs)


@dataclass
class HostState:
    """One host's view of the fabric; objects by id (hosts and gateways by name)."""

    revision: int = 0
    fabric: dict[str, Any] = field(default_factory=dict)
    host: dict[str, Any] | None = None
    gateways: dict[str, dict[str, Any]] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    subnets: dict[str, dict[str, Any]] = field(default_factory=dict)
    ports: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Anycast groups by id: those with a member bound to this host (every group
    # for a gateway).
    anycast: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Every security group, with its rules, by id.
    security_groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Every port in a security group, wherever it is bound, by port id:
    # {"id", "security_groups", "addresses"} (service/watch.py member_record).
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    # group id -> member addresses, kept per event (built from members if not given).
    index: GroupMembers | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.index is None:
            self.index = GroupMembers.of(self.members)

    def group_members(self, group_id: str) -> frozenset[str]:
        """The addresses of the ports in ``group_id`` (for its ``remote_group_id``
        rules): every fixed IP and allowed address pair; a shared frozenset."""
        assert self.index is not None
        return self.index.addresses(group_id)

    def member_addresses(self) -> Mapping[str, frozenset[str]]:
        """Group id -> ``group_members`` of every group with members, a read-only
        view (the ``members`` argument of ``dataplane.sg_model.build_state``)."""
        assert self.index is not None
        return self.index.by_group()

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any]) -> HostState:
        # Records with bad addresses (stored before the API refused them) are left out.
        def admitted(kind: str, objects: list[dict[str, Any]], key: str) -> dict[str, Any]:
            return {o[key]: o for o in objects if admit(kind, o) is not None}

        return cls(
            revision=snap["revision"],
            fabric=admit_fabric(snap["fabric"]),
            host=admit("host", snap["host"]),
            gateways=admitted("gateway", snap["gateways"], "name"),
            hosts=admitted("host", snap["hosts"], "name"),
            networks={n["id"]: n for n in snap["networks"]},
            subnets=admitted("subnet", snap["subnets"], "id"),
            ports=admitted("port", snap["ports"], "id"),
            anycast=admitted("anycast", snap.get("anycast", []), "id"),
            security_groups=admitted("security_group", snap.get("security_groups", []), "id"),
            members=admitted("member", snap.get("members", []), "id"),
        )

    def apply(self, host: str, event: dict[str, Any]) -> bool:
        """Apply one watch event (full objects, so replays are harmless).

        Returns False when the event changed only what an agent reports itself
        (a port's ``status`` and the bookkeeping that comes with it): the
        cache takes it, but nothing needs converging. Without this, the
        statuses a host reports after a pass (10,000 ports turning ACTIVE)
        come back as 10,000 events and a second full pass.
        """
        kind, obj, id_ = event["kind"], event["object"], event["id"]
        deleted = event["type"] == "delete"
        if kind == "fabric":
            self.fabric = admit_fabric(obj)
            return True
        if not deleted and admit(kind, obj) is None:
            # A record with a bad address counts as absent (record_check).
            deleted, obj = True, None
        if kind == "host" and id_ == host:
            self.host = None if deleted else obj
        else:
            # "anycast" is its own plural.
            table: dict[str, dict[str, Any]] = getattr(
                self, kind if kind == "anycast" else f"{kind}s"
            )
            old = table.get(id_)
            if deleted:
                table.pop(id_, None)
                obj = None
            else:
                table[id_] = obj
            if kind == "member":
                assert self.index is not None
                self.index.changed(self.members, id_, old, obj)
            if old is None:
                return obj is not None
            if kind == "port" and obj is not None:
                return material(old) != material(obj)
            if kind in ("member", "security_group"):
                # A replay (after a snapshot) of what the cache has changes nothing.
                return old != obj
        return True

    def copy(self, counted: bool = False) -> HostState:
        """The dicts copied, the objects shared: events replace objects, never edit them.

        ``counted``: the copy's member index keeps its counts (for the copy
        that takes the next events), else it counts again at its first change.
        """
        assert self.index is not None
        return HostState(
            self.revision,
            self.fabric,
            self.host,
            *(dict(t) for t in (self.gateways, self.hosts, self.networks, self.subnets)),
            dict(self.ports),
            dict(self.anycast),
            dict(self.security_groups),
            dict(self.members),
            self.index.copy(counted),
        )


class HostStateWatcher:
    """Keeps ``state()`` equal to the controller's view of ``host``, in a background thread.

    ``changed`` is set (and ``on_change`` called from the watcher's thread)
    after each change is applied; the consumer clears ``changed`` before it
    reads ``state()``. ``synced`` is set once the first snapshot is in.
    After ``resync_after`` consecutive failures (any kind) it takes a fresh
    snapshot rather than retry the same watch forever. ``transport`` is for
    tests (an httpx mock transport).
    """

    def __init__(
        self,
        api_url: Urls,
        host: str,
        *,
        on_change: Callable[[], None] | None = None,
        watch_timeout: float = 25.0,
        request_timeout: float = 10.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        resync_after: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.controllers = Controllers.of(api_url)
        self.host = host
        self._credentials = credentials or Credentials.from_env()
        self.on_change = on_change
        self.watch_timeout = watch_timeout
        self.request_timeout = request_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.resync_after = resync_after
        self._transport = transport
        self.changed = threading.Event()
        self.synced = threading.Event()
        self.connected = False
        self.last_error: str | None = None
        self.snapshots = 0  # how many full snapshots were taken (1 + resyncs)
        self.failures = 0  # consecutive failed calls; 0 while the controller answers
        self._answered_failures = 0  # of those, the ones the controller answered
        self._unreached = 0  # of those, the controllers in a row that could not be reached
        self.failovers = 0  # how many times the watch moved to another controller
        self._state = HostState()
        # The ports the watch's answers carried since ``state_and_changes()``
        # last took them; None: not known (before the first call, after a
        # snapshot): every port may have changed.
        self._ports_changed: set[str] | None = None
        self._lent = False  # whether ``state()`` handed out the cache (copy before a change)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = threading.Event()
        # The long poll in flight and its controller: another thread that finds that
        # controller gone (a heartbeat timing out on a hung one) cuts the poll short
        # rather than leave the watch waiting out its timeout there.
        self._poll: tuple[str, asyncio.Future[httpx.Response]] | None = None
        self.controllers.on_move(self._moved)

    @property
    def api_url(self) -> str:
        """The controller in use."""
        return self.controllers.current

    def state(self) -> HostState:
        """A consistent view of the cache, never changed afterwards (do not edit it).

        The cache itself, lent: the next change copies it first (in the watch's
        thread, when an event comes), so a pass on a host of 10,000 ports does
        not copy its port and member maps when nothing changed since the last.
        """
        with self._lock:
            self._lent = True
            return self._state

    def state_and_changes(self) -> tuple[HostState, frozenset[str] | None]:
        """``state()`` and the ids of the ports that changed since the last call.

        A port not named kept the object it had in the last call's state (the
        watch replaces objects, never edits them); None: not known (the first
        call, or a snapshot came since), compare them all. For one consumer:
        each call starts the next count.
        """
        with self._lock:
            changed, self._ports_changed = self._ports_changed, set()
            self._lent = True
            return self._state, None if changed is None else frozenset(changed)

    def start(self) -> HostStateWatcher:
        if self._thread is not None:
            raise RuntimeError("watcher already started")
        self._thread = threading.Thread(
            target=self._thread_main, name=f"watch-{self.host}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching; an outstanding long poll is cancelled, not waited for."""
        self._stopping.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            # The loop may close between the read and the call; then there is nothing to cancel.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> HostStateWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # The watcher's thread ---------------------------------------------------------

    def _thread_main(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        if self._stopping.is_set():
            return
        try:
            async with httpx.AsyncClient(
                timeout=self.request_timeout,
                transport=self._transport,
                **self._credentials.client_options(),
            ) as http:
                await self._run(http)
        except asyncio.CancelledError:
            pass

    async def _run(self, http: httpx.AsyncClient) -> None:
        need_snapshot = True
        while not self._stopping.is_set():
            try:
                if need_snapshot:
                    snap = await self._get(http, _watch_params(self.host, None, None), None)
                    self._replace(HostState.from_snapshot(snap))
                    need_snapshot = False
                else:
                    since = self._state.revision
                    params = _watch_params(self.host, since, self.watch_timeout)
                    answer = await self._get(http, params, self.watch_timeout)
                    self._apply(answer)
                self.failures = self._answered_failures = self._unreached = 0
                self.connected = True
            except ResyncRequired as exc:
                log.info("watch of %s: %s; taking a new snapshot", self.host, exc.message)
                need_snapshot = True
            except ControllerUnavailable as exc:
                if self._move_on(exc, need_snapshot):
                    continue  # another controller to try: at once, from the same revision
                await self._retry_later(exc)
            except Exception as exc:
                # The controller answers, but not with what we can use (a 500, a
                # body we cannot read): retried, slower and slower. Again and
                # again from one revision: what lies past it may never come
                # through, so start over from a fresh snapshot rather than wait
                # for a 410. (Unreachable is not that: the watch resumes where it
                # was once a controller is back.)
                self.connected = True
                self.last_error = str(exc)
                self._answered_failures += 1
                self._unreached = 0
                if self._answered_failures >= self.resync_after and not need_snapshot:
                    log.warning(
                        "watch of %s failed %d times; resyncing", self.host, self.failures + 1
                    )
                    need_snapshot = True
                await self._retry_later(exc)

    def _move_on(self, exc: ControllerUnavailable, need_snapshot: bool) -> bool:
        """The controller in use is unreachable: move to the next; True if it is yet untried.

        Untried: not one of the controllers that failed in a row just now, so
        the call is repeated there at once. Once all have failed, the
        watcher backs off as with one controller.
        """
        self.connected = False
        self.last_error = str(exc)
        self._answered_failures = 0
        self._unreached += 1
        left = exc.url or self.api_url
        now = self.controllers.unreachable(left, repr(exc.__cause__ or exc))
        if now == left or self._unreached >= len(self.controllers):
            return False
        self.failovers += 1
        resume = (
            "a snapshot" if need_snapshot else f"the watch from revision {self._state.revision}"
        )
        log.warning("watch of %s: %s unreachable; %s at %s", self.host, left, resume, now)
        return True

    async def _retry_later(self, exc: Exception) -> None:
        delay = self._backoff(self.failures)
        self.failures += 1
        log.warning("watch of %s failed (%s); retrying in %.2f s", self.host, exc, delay)
        await asyncio.sleep(delay)

    def _backoff(self, failures: int) -> float:
        """Exponential, capped, with jitter so that many agents do not retry in step."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2**failures)
        return ceiling * random.uniform(0.5, 1.0)

    async def _get(
        self, http: httpx.AsyncClient, params: dict[str, Any], long_poll: float | None
    ) -> Any:
        timeout = self.request_timeout + (long_poll or 0.0)
        url = self.api_url
        call = asyncio.ensure_future(http.get(url + "/v1/watch", params=params, timeout=timeout))
        self._poll = (url, call)
        try:
            response = await call
        except httpx.TransportError as exc:
            raise ControllerUnavailable(f"{url}: {exc!r}", url=url) from exc
        except asyncio.CancelledError:
            if self._stopping.is_set() or not call.cancelled():
                raise
            raise ControllerUnavailable(f"{url}: left for another controller", url=url) from None
        finally:
            self._poll = None
        if response.status_code == _UNAVAILABLE:
            # Not a revision we cannot get past (no resync): a controller that cannot serve.
            raise ControllerUnavailable(f"{url}: {_error(response)}", url=url)
        return _decode(response)

    def _moved(self, url: str) -> None:
        """The controllers moved on to ``url`` (any thread): end a poll elsewhere now."""
        poll, loop = self._poll, self._loop
        if poll is not None and poll[0] != url and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(poll[1].cancel)

    def _replace(self, state: HostState) -> None:
        with self._lock:
            self._state, self._lent = state, False
            self._ports_changed = None
        self.snapshots += 1
        self.synced.set()
        self._notify()

    def _apply(self, answer: dict[str, Any]) -> None:
        events = answer["events"]
        material = False
        with self._lock:
            if self._lent and (events or answer["revision"] != self._state.revision):
                # A view of it is out: change a copy.
                self._state, self._lent = self._state.copy(counted=True), False
            changed = self._ports_changed
            for event in events:
                material |= self._state.apply(self.host, event)
                if changed is not None and event["kind"] == "port":
                    changed.add(event["id"])
            self._state.revision = answer["revision"]
        if material:
            self._notify()

    def _notify(self) -> None:
        self.changed.set()
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.exception("on_change callback of the %s watcher failed", self.host)
