"""The fabric API (/v1): fabric configuration, gateways, hosts, heartbeats and the watch.

Owns the schema of the fabric objects (pydantic models), where their status
lives in the store, and which store changes concern which host's agent.

Registrations (``/fabric/hosts/NAME``, ``/fabric/gateways/NAME``) change only
when an operator or the lab changes them; what agents report every few seconds
(heartbeat time, BGP sessions, NAT counters) lives under ``/fabric/status/``
so that heartbeats never wake other agents' watches.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import anyio
import anyio.to_thread
from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from l3fabric import keys
from l3fabric.addresses import (
    IpAddressText,
    IpNetworkText,
    Ipv4AddressText,
    PeerAddressText,
    parse_address,
)
from l3fabric.api.body import JsonBody, openapi_body
from l3fabric.api.errors import NeutronError, bad_request, not_found
from l3fabric.api.jsontext import JsonResponse, JsonRoute
from l3fabric.asn import effective_asn
from l3fabric.model.bounded import BoundedJson, json_bytes
from l3fabric.service import anycast, ports
from l3fabric.store import (
    CompactedError,
    Delete,
    Event,
    KeyNotFoundError,
    Put,
    Store,
)

log = logging.getLogger(__name__)

# Status reports, kept apart from the registrations (see the module docstring).
STATUS = "/fabric/status/"
HOST_STATUS = f"{STATUS}hosts/"
GATEWAY_STATUS = f"{STATUS}gateways/"

WATCH_DEFAULT_TIMEOUT_S = 25.0
WATCH_MAX_TIMEOUT_S = 55.0
# A host is "up" while its last heartbeat is younger than this many intervals.
HEARTBEAT_GRACE_INTERVALS = 3
# Long polls each hold a thread; they get their own pool so that many agents
# watching never starve the API's ordinary (sync) endpoints.
WATCH_THREADS = 1000
# How long one blocking store.watch call may last, so a watch notices shutdown.
_WATCH_SLICE_S = 1.0


Asn = Annotated[int, Field(ge=1, le=4_294_967_294)]
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
Name = Annotated[str, Field(pattern=f"^{NAME_RE.pattern}$")]
PortStatus = Literal["ACTIVE", "DOWN", "ERROR"]


class _Strict(BaseModel):
    # A misspelt field must be an error, not silently ignored.
    model_config = ConfigDict(extra="forbid")


class Bfd(_Strict):
    enabled: bool = True
    interval_ms: int = Field(100, ge=10, le=60_000)
    multiplier: int = Field(3, ge=1, le=255)


class GracefulRestart(_Strict):
    enabled: bool = True
    restart_time_s: int = Field(120, ge=1, le=4095)


class FabricConfig(_Strict):
    """Everything the agents need to render BIRD, with Calico-like defaults."""

    asn: Asn = 65000
    peering: Literal["gateway", "mesh", "reflectors"] = "gateway"
    host_asn: Literal["same", "per-host"] = "same"
    route_reflectors: list[PeerAddressText] = []
    bfd: Bfd = Bfd()
    graceful_restart: GracefulRestart = GracefulRestart()
    keepalive_s: int = Field(30, ge=1, le=21_845)
    hold_s: int = Field(90, ge=0, le=65_535)
    heartbeat_interval_s: float = Field(2.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _consistent(self) -> FabricConfig:
        if self.peering == "reflectors" and not self.route_reflectors:
            raise ValueError('peering "reflectors" needs at least one address in route_reflectors')
        # RFC 4271: the hold time is 0 (no keepalives) or at least 3 s.
        if 0 < self.hold_s < 3:
            raise ValueError("hold_s must be 0 or at least 3")
        if self.hold_s and self.keepalive_s >= self.hold_s:
            raise ValueError("keepalive_s must be smaller than hold_s")
        return self


class Peer(_Strict):
    name: Name
    address: PeerAddressText
    asn: Asn
    # This end's address of the session; None: chosen by the agent (docs/fabric-api.md).
    local: PeerAddressText | None = None

    @model_validator(mode="after")
    def _same_family(self) -> Peer:
        local, address = self.local, parse_address(self.address)
        if local is not None and parse_address(local).version != address.version:
            raise ValueError(f"local {local} and address {address} differ in family")
        return self


def _unique_names(peers: list[Peer]) -> list[Peer]:
    # A peer's name names its BGP session (BIRD protocol "p:NAME"): one name, one session.
    names = [p.name for p in peers]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"peer names must be unique in a list: {', '.join(twice)} repeated")
    return peers


Peers = Annotated[list[Peer], AfterValidator(_unique_names)]


class GatewayRegistration(_Strict):
    name: Name | None = None
    router_id: Ipv4AddressText
    asn: Asn | None = None
    fabric_addresses: list[PeerAddressText] = Field(min_length=1)
    upstream: Peers = []
    snat_address: IpAddressText | None = None
    # The gateway's BGP neighbours in the fabric; None: derived from the fabric's peering mode.
    fabric_peers: Peers | None = None
    # Prefixes besides the subnets that the gateway accepts from the fabric
    # (router loopbacks, link nets), e.g. ["172.16.0.0/16", "172.17.0.0/16"].
    infrastructure: list[IpNetworkText] = []


class HostRegistration(_Strict):
    name: Name | None = None
    router_id: Ipv4AddressText
    address: PeerAddressText
    asn: Asn | None = None
    peers: Peers | None = None
    rack: Name | None = None


class BgpSession(_Strict):
    name: str
    peer: str = ""
    state: str
    info: str = ""


# What heartbeats store grows with the fabric: a BGP session per peer (a
# mesh of 1,000 hosts: ~80 KB), an anycast entry per group and next hop.
# The port statuses are applied, not stored; the body limit bounds them.
BgpSessions = Annotated[list[BgpSession], json_bytes(256 * 1024)]
AnycastStatus = Annotated[dict[str, Any], json_bytes(256 * 1024)]


class HostHeartbeat(_Strict):
    ports: dict[str, PortStatus] = {}
    bgp: BgpSessions = []
    agent: BoundedJson = {}


class GatewayHeartbeat(_Strict):
    bgp: BgpSessions = []
    nat: BoundedJson = {}
    agent: BoundedJson = {}
    # Programmed anycast groups: {"prefixes": [{"prefix", "next_hops": [{via, dev, weight}]}]}
    anycast: AnycastStatus = {}


# Derived values ---------------------------------------------------------------


_Model = TypeVar("_Model", bound=BaseModel)


def _parse(model: type[_Model], payload: Any) -> _Model:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors()
        )
        raise bad_request(f"Invalid {model.__name__}: {problems}") from None


def _check_name(kind: str, name: str) -> None:
    # Path and query parameters get the same rule as the names in bodies.
    if not NAME_RE.fullmatch(name):
        raise bad_request(
            f"{kind} name {name!r} is invalid: use 1-63 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _registration(model: type[BaseModel], name: str, payload: Any) -> dict[str, Any]:
    _check_name("the", name)
    if isinstance(payload, dict) and "name" in payload and payload["name"] not in (None, name):
        raise bad_request(f"name {payload['name']!r} in the body differs from {name!r} in the URL")
    record = _parse(model, payload).model_dump(mode="json")
    record["name"] = name
    return record


# Reading -----------------------------------------------------------------------


def read_fabric(store: Store) -> dict[str, Any]:
    """The fabric configuration, or the defaults when it was never set."""
    kv = store.get(keys.FABRIC_CONFIG)
    return _fabric_value(kv.value if kv else None)


def _fabric_value(value: dict[str, Any] | None) -> dict[str, Any]:
    # Re-validating fills in fields added to the schema after the value was stored.
    try:
        return FabricConfig.model_validate(value or {}).model_dump(mode="json")
    except ValidationError as exc:
        # Stored before the schema got stricter (a zone ID in route_reflectors):
        # served as stored over the defaults, never a 500; agents leave out
        # what they must not render (record_check), and a PUT replaces it.
        log.error("the stored fabric config is invalid now (%s); PUT /v1/fabric to fix it", exc)
        return {**FabricConfig().model_dump(mode="json"), **(value or {})}


def _host_view(record: dict[str, Any], status: dict[str, Any] | None, fabric: dict[str, Any]):
    last = status.get("heartbeat_at") if status else None
    grace = HEARTBEAT_GRACE_INTERVALS * float(fabric["heartbeat_interval_s"])
    view = dict(record)
    view["effective_asn"] = effective_asn(record, fabric)
    view["status"] = "up" if last is not None and time.time() - last < grace else "down"
    view["heartbeat_at"] = _iso(last)
    view["bgp"] = status.get("bgp", []) if status else []
    view["agent"] = status.get("agent", {}) if status else {}
    return view


def _gateway_view(record: dict[str, Any], status: dict[str, Any] | None, fabric: dict[str, Any]):
    view = _host_view(record, status, fabric)
    view["effective_asn"] = effective_asn(record, fabric, kind="gateway")
    view["nat"] = status.get("nat", {}) if status else {}
    view["anycast"] = status.get("anycast", {}) if status else {}
    return view


def _statuses(store: Store, prefix: str) -> dict[str, dict[str, Any]]:
    kvs, _ = store.range(prefix)
    return {kv.key[len(prefix) :]: kv.value for kv in kvs}


# The watch ---------------------------------------------------------------------


def snapshot(store: Store, host: str) -> dict[str, Any]:
    """Everything ``host``'s agent needs, and the revision to watch from.

    The prefixes are read one after another; the revision returned is that of
    the first read, so a watch from it replays anything the later reads
    already include. Replaying full-object puts and deletes in order is
    idempotent, so the client converges to the same state.
    """
    ports, revision = store.range(keys.neutron_prefix("ports"))
    networks, _ = store.range(keys.neutron_prefix("networks"))
    subnets, _ = store.range(keys.neutron_prefix("subnets"))
    fabric_kvs, _ = store.range("/fabric/")
    by_key = {kv.key: kv.value for kv in fabric_kvs}
    hosts = [kv.value for kv in fabric_kvs if kv.key.startswith(keys.HOSTS)]
    local = [kv.value for kv in ports if kv.value.get("binding:host_id") == host]
    local_ids = {p["id"] for p in local}
    # Gateways weight anycast next hops, so they get every group; a host only
    # the groups with a member bound to it.
    everything = keys.gateway_key(host) in by_key
    groups = [kv.value for kv in fabric_kvs if kv.key.startswith(keys.ANYCAST)]
    return {
        "revision": revision,
        "fabric": _fabric_value(by_key.get(keys.FABRIC_CONFIG)),
        "host": by_key.get(keys.host_key(host)),
        "gateways": [kv.value for kv in fabric_kvs if kv.key.startswith(keys.GATEWAYS)],
        "hosts": [h for h in hosts if h.get("name") != host],
        "networks": [kv.value for kv in networks],
        "subnets": [kv.value for kv in subnets],
        "ports": local,
        "anycast": [g for g in groups if everything or anycast.concerns(g, local_ids)],
    }


_PORTS = keys.neutron_prefix("ports")
_BROADCAST_KINDS = {
    keys.neutron_prefix("networks"): "network",
    keys.neutron_prefix("subnets"): "subnet",
    keys.GATEWAYS: "gateway",
    keys.HOSTS: "host",
}


def relevant_event(event: Event, host: str) -> dict[str, Any] | None:
    """The watch event ``host``'s agent sees for a store change, or None."""
    if event.key.startswith(_PORTS):
        port_id = event.key[len(_PORTS) :]
        now = event.value is not None and event.value.get("binding:host_id") == host
        before = event.prev_value is not None and event.prev_value.get("binding:host_id") == host
        if now:
            return _event("put", "port", port_id, event.revision, event.value)
        if before:
            # Moved to another host, unbound or deleted: gone as far as this host knows.
            return _event("delete", "port", port_id, event.revision, None)
        return None
    if event.key == keys.FABRIC_CONFIG:
        value = event.value if event.type == "put" else None
        return _event("put", "fabric", "fabric", event.revision, _fabric_value(value))
    for prefix, kind in _BROADCAST_KINDS.items():
        if event.key.startswith(prefix):
            if event.type == "put" and event.value == event.prev_value:
                return None  # a rewrite of the same registration changes nothing
            return _event(event.type, kind, event.key[len(prefix) :], event.revision, event.value)
    return None


def relevant_events(store: Store, events: list[Event], host: str) -> list[dict[str, Any]]:
    """The watch events ``host``'s agent sees for a batch of store changes.

    ``relevant_event`` for each change, then the anycast groups the batch
    touched for this host (kind ``anycast``): which groups concern a host
    depends on where their member ports are bound, so it needs the store.
    """
    found = [e for e in (relevant_event(ev, host) for ev in events) if e is not None]
    if events:
        everything = store.get(keys.gateway_key(host)) is not None
        found += anycast.watch_events(store, events, host, everything)
    return found


def _event(type_: str, kind: str, id_: str, revision: int, obj: Any) -> dict[str, Any]:
    return {"type": type_, "kind": kind, "id": id_, "revision": revision, "object": obj}


def watch_blocking(
    store: Store, host: str, since: int, timeout: float, stopping: threading.Event | None = None
) -> dict[str, Any]:
    """Long-poll: the events after ``since`` that concern ``host``, as soon as there are any.

    Irrelevant changes (other hosts' ports, IPAM, status reports) are skipped
    without returning, so they cost a watcher nothing but a filter pass.
    Raises CompactedError when ``since`` is older than the history.
    """
    if since > store.revision():
        # A revision from the future: the store was replaced; the client must relist.
        raise CompactedError(since, store.revision())
    deadline = time.monotonic() + timeout
    seen = since
    while True:
        remaining = deadline - time.monotonic()
        events, seen = store.watch("/", seen, max(0.0, min(remaining, _WATCH_SLICE_S)))
        found = relevant_events(store, events, host)
        stop = stopping is not None and stopping.is_set()
        if found or remaining <= 0 or stop:
            return {"revision": seen, "events": found}


# Port status from heartbeats -------------------------------------------------------


def set_port_status(store: Store, host: str, port_id: str, status: str) -> bool:
    """Set a port's Neutron status if it is bound to ``host``; True if it changed.

    The ports' one write path (``l3fabric.service.ports.set_status``): the
    revision moves as on an API update; an unchanged status writes nothing.
    """
    return ports.set_status(store, host, port_id, status)


# HTTP ------------------------------------------------------------------------------


def install(app: FastAPI) -> None:
    """Add the /v1 routes to ``app`` (whose ``state.store`` is the store)."""
    # Set by the server on shutdown, so long polls end at once.
    if not hasattr(app.state, "stopping"):
        app.state.stopping = threading.Event()
    app.include_router(_router())


def _store(request: Request) -> Store:
    return request.app.state.store


def _router() -> APIRouter:
    # Bodies are parsed by api.body and validated here (so errors say InvalidInput
    # in our words); results leave through jsontext (JsonRoute).
    router = APIRouter(prefix="/v1", route_class=JsonRoute)

    @router.get("/fabric")
    def get_fabric(request: Request) -> dict[str, Any]:
        return read_fabric(_store(request))

    @router.put("/fabric", openapi_extra=openapi_body(FabricConfig))
    def put_fabric(request: Request, payload: JsonBody) -> dict[str, Any]:
        config = _parse(FabricConfig, payload).model_dump(mode="json")
        _store(request).put(keys.FABRIC_CONFIG, config)
        return config

    for kind, model, key_of, status_prefix, view in (
        ("host", HostRegistration, keys.host_key, HOST_STATUS, _host_view),
        ("gateway", GatewayRegistration, keys.gateway_key, GATEWAY_STATUS, _gateway_view),
    ):
        _registry_routes(router, kind, model, key_of, status_prefix, view)

    @router.post("/hosts/{name}/heartbeat", openapi_extra=openapi_body(HostHeartbeat))
    def host_heartbeat(request: Request, name: str, payload: JsonBody) -> dict[str, Any]:
        store = _store(request)
        beat = _parse(HostHeartbeat, payload)
        if store.get(keys.host_key(name)) is None:
            raise not_found("HostNotFound", f"Host {name} is not registered.")
        status = {"heartbeat_at": time.time(), **beat.model_dump(mode="json", exclude={"ports"})}
        store.put(f"{HOST_STATUS}{name}", status)
        changed = [p for p, s in beat.ports.items() if set_port_status(store, name, p, s)]
        return {"host": name, "ports_changed": sorted(changed)}

    @router.post("/gateways/{name}/heartbeat", openapi_extra=openapi_body(GatewayHeartbeat))
    def gateway_heartbeat(request: Request, name: str, payload: JsonBody) -> dict[str, Any]:
        store = _store(request)
        beat = _parse(GatewayHeartbeat, payload)
        if store.get(keys.gateway_key(name)) is None:
            raise not_found("GatewayNotFound", f"Gateway {name} is not registered.")
        status = {"heartbeat_at": time.time(), **beat.model_dump(mode="json")}
        store.put(f"{GATEWAY_STATUS}{name}", status)
        return {"gateway": name}

    @router.get("/watch")
    async def watch(
        request: Request,
        host: str,
        since: int | None = None,
        timeout: float = WATCH_DEFAULT_TIMEOUT_S,
    ) -> dict[str, Any]:
        _check_name("host", host)
        store = _store(request)
        if since is None:
            return await anyio.to_thread.run_sync(snapshot, store, host)
        if since < 0:
            raise bad_request("since must be a revision (0 or more)")
        if not 0 <= timeout <= WATCH_MAX_TIMEOUT_S:
            raise bad_request(f"timeout must be between 0 and {WATCH_MAX_TIMEOUT_S:g} seconds")
        state = request.app.state
        if getattr(state, "watch_limiter", None) is None:
            state.watch_limiter = anyio.CapacityLimiter(WATCH_THREADS)
        try:
            return await anyio.to_thread.run_sync(
                watch_blocking,
                store,
                host,
                since,
                timeout,
                state.stopping,
                limiter=state.watch_limiter,
                abandon_on_cancel=True,
            )
        except CompactedError as exc:
            raise NeutronError(
                410, "ResyncRequired", f"{exc}; take a new snapshot (GET /v1/watch?host={host})"
            ) from None

    return router


def _registry_routes(
    router: APIRouter,
    kind: str,
    model: type[BaseModel],
    key_of: Callable[[str], str],
    status_prefix: str,
    view: Callable[..., dict[str, Any]],
) -> None:
    """List, show, register (PUT) and delete for hosts or gateways."""
    plural = f"{kind}s"
    missing = f"{kind.capitalize()}NotFound"

    def list_(request: Request) -> dict[str, Any]:
        store = _store(request)
        fabric = read_fabric(store)
        kvs, _ = store.range(key_of(""))
        statuses = _statuses(store, status_prefix)
        return {plural: [view(kv.value, statuses.get(kv.value["name"]), fabric) for kv in kvs]}

    def show(request: Request, name: str) -> dict[str, Any]:
        store = _store(request)
        kv = store.get(key_of(name))
        if kv is None:
            raise not_found(missing, f"{kind.capitalize()} {name} is not registered.")
        status = store.get(f"{status_prefix}{name}")
        return view(kv.value, status.value if status else None, read_fabric(store))

    def register(request: Request, name: str, payload: JsonBody) -> Response:
        store = _store(request)
        record = _registration(model, name, payload)
        existed = store.get(key_of(name)) is not None
        store.put(key_of(name), record)
        return JsonResponse(record, status_code=200 if existed else 201)

    def delete(request: Request, name: str) -> Response:
        store = _store(request)
        if store.get(key_of(name)) is None:
            raise not_found(missing, f"{kind.capitalize()} {name} is not registered.")
        ops: list[Delete | Put] = [Delete(key_of(name))]
        if store.get(f"{status_prefix}{name}") is not None:
            ops.append(Delete(f"{status_prefix}{name}"))
        try:
            store.txn(ops)
        except KeyNotFoundError:
            raise not_found(missing, f"{kind.capitalize()} {name} is not registered.") from None
        return Response(status_code=204)

    router.add_api_route(f"/{plural}", list_, methods=["GET"])
    router.add_api_route(f"/{plural}/{{name}}", show, methods=["GET"])
    router.add_api_route(
        f"/{plural}/{{name}}", register, methods=["PUT"], openapi_extra=openapi_body(model)
    )
    router.add_api_route(f"/{plural}/{{name}}", delete, methods=["DELETE"], status_code=204)


__all__ = [
    "FabricConfig",
    "GatewayRegistration",
    "HostRegistration",
    "effective_asn",
    "install",
    "read_fabric",
    "relevant_event",
    "relevant_events",
    "set_port_status",
    "snapshot",
    "watch_blocking",
]
