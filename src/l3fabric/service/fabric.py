"""The fabric's semantics over the store: its configuration, the host and
gateway registries, and the heartbeats their agents send.

Registrations (``/fabric/hosts/NAME``, ``/fabric/gateways/NAME``) change only
when an operator or the lab changes them; what agents report every few seconds
(heartbeat time, BGP sessions, NAT counters) is kept in memory
(``service.liveness``), and only a change of its state (a BGP session up or
down) is written, under ``/fabric/status/``, so that heartbeats cost no store
write and never wake other agents' watches. Whether an agent is up is the
liveness's answer: its report's age on one controller (SQLite), its etcd
lease on several (the same answer on each). Port statuses from host
heartbeats go through the ports' one write path (``ports.set_statuses``), and
only when they differ from what this controller applied lately.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from l3fabric import keys
from l3fabric.asn import effective_asn
from l3fabric.model.fabric import (
    NAME_RE,
    FabricConfig,
    GatewayHeartbeat,
    GatewayRegistration,
    HostHeartbeat,
    HostRegistration,
)
from l3fabric.service.errors import NotFound, bad_request, not_found
from l3fabric.service.liveness import (
    AppliedStatuses,
    Liveness,
    MemoryLiveness,
    durable_state,
    for_store,
)
from l3fabric.service.ports import set_statuses
from l3fabric.store import Delete, KeyNotFoundError, Put, Store

log = logging.getLogger(__name__)

JSON = dict[str, Any]

# Status reports, kept apart from the registrations (see the module docstring).
STATUS = "/fabric/status/"
HOST_STATUS = f"{STATUS}hosts/"
GATEWAY_STATUS = f"{STATUS}gateways/"

# A host is "up" while its last heartbeat is younger than this many intervals:
# two missed heartbeats (4 s at the default 2 s) mark it down, so `l3fabric
# status` and /ui show a dead agent within 5 s (heartbeats have their own thread).
# On etcd it is the TTL of each agent's liveness lease.
HEARTBEAT_GRACE_INTERVALS = 2
# How long a controller goes on using the grace it read from the fabric
# configuration for new leases (a changed heartbeat interval takes this long).
GRACE_CACHE_S = 10.0

_Model = TypeVar("_Model", bound=BaseModel)


def parse(model: type[_Model], payload: Any) -> _Model:
    """``payload`` as ``model``, or a 400 that names every problem."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors()
        )
        raise bad_request(f"Invalid {model.__name__}: {problems}") from None


def check_name(kind: str, name: str) -> None:
    """Path and query parameters get the same rule as the names in bodies."""
    if not NAME_RE.fullmatch(name):
        raise bad_request(
            f"{kind} name {name!r} is invalid: use 1-63 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# The configuration -------------------------------------------------------------


def read_fabric(store: Store) -> JSON:
    """The fabric configuration, or the defaults when it was never set."""
    kv = store.get(keys.FABRIC_CONFIG)
    return fabric_value(kv.value if kv else None)


def fabric_value(value: JSON | None) -> JSON:
    """A stored configuration as served (``None``: never set, the defaults)."""
    # Re-validating fills in fields added to the schema after the value was stored.
    try:
        return FabricConfig.model_validate(value or {}).model_dump(mode="json")
    except ValidationError as exc:
        # Stored before the schema got stricter (a zone ID in route_reflectors):
        # served as stored over the defaults, never a 500; agents leave out
        # what they must not render (record_check), and a PUT replaces it.
        log.error("the stored fabric config is invalid now (%s); PUT /v1/fabric to fix it", exc)
        return {**FabricConfig().model_dump(mode="json"), **(value or {})}


# Views: a registration with what its agent last reported -------------------------


def grace_s(fabric: JSON) -> float:
    """How long an agent may stay silent before it is shown down."""
    return HEARTBEAT_GRACE_INTERVALS * float(fabric["heartbeat_interval_s"])


def host_view(record: JSON, status: JSON | None, fabric: JSON, up: bool) -> JSON:
    last = status.get("heartbeat_at") if status else None
    view = dict(record)
    view["effective_asn"] = effective_asn(record, fabric)
    view["status"] = "up" if up else "down"
    view["heartbeat_at"] = _iso(last)
    view["bgp"] = status.get("bgp", []) if status else []
    view["agent"] = status.get("agent", {}) if status else {}
    return view


def gateway_view(record: JSON, status: JSON | None, fabric: JSON, up: bool) -> JSON:
    view = host_view(record, status, fabric, up)
    view["effective_asn"] = effective_asn(record, fabric, kind="gateway")
    view["nat"] = status.get("nat", {}) if status else {}
    view["anycast"] = status.get("anycast", {}) if status else {}
    return view


def _stamp(report: JSON) -> float:
    return float(report.get("heartbeat_at") or 0.0)


@dataclass(frozen=True)
class Registry:
    """Hosts or gateways: their registrations, shown with their agents' status."""

    store: Store
    kind: str  # "host" or "gateway"
    model: type[BaseModel]
    key_of: Callable[[str], str]
    status_prefix: str
    view: Callable[[JSON, JSON | None, JSON, bool], JSON]
    liveness: Liveness = field(default_factory=MemoryLiveness)
    # Name -> the durable state this controller last wrote (or read) for it.
    _written: dict[str, JSON] = field(default_factory=dict)

    def missing(self, name: str) -> NotFound:
        label = self.kind.capitalize()
        return not_found(f"{label}NotFound", f"{label} {name} is not registered.")

    def list(self) -> list[JSON]:
        fabric = read_fabric(self.store)
        kvs, _ = self.store.range(self.key_of(""))
        statuses, _ = self.store.range(self.status_prefix)
        by_name = {kv.key[len(self.status_prefix) :]: kv.value for kv in statuses}
        return self._views([kv.value for kv in kvs], by_name, fabric)

    def show(self, name: str) -> JSON:
        kv = self.store.get(self.key_of(name))
        if kv is None:
            raise self.missing(name)
        status = self.store.get(f"{self.status_prefix}{name}")
        stored = {name: status.value} if status else {}
        return self._views([kv.value], stored, read_fabric(self.store))[0]

    def _views(self, records: list[JSON], stored: dict[str, JSON], fabric: JSON) -> list[JSON]:
        shown = {r["name"]: self._status(r["name"], stored.get(r["name"])) for r in records}
        up = self.liveness.up(self.kind, shown, grace_s(fabric)) if shown else set()
        return [self.view(r, shown[r["name"]], fabric, r["name"] in up) for r in records]

    def _status(self, name: str, stored: JSON | None) -> JSON | None:
        """The agent's last report to this controller, or the state last stored when
        that is newer (the agent has moved to another controller, which wrote it)."""
        live = self.liveness.last(self.kind, name)
        if live is None or (stored and _stamp(stored) > _stamp(live)):
            return stored
        return live

    def register(self, name: str, payload: Any) -> tuple[JSON, bool]:
        """Store the registration of ``name``; returns it and whether it is new."""
        check_name("the", name)
        if isinstance(payload, dict) and payload.get("name", name) not in (None, name):
            raise bad_request(
                f"name {payload['name']!r} in the body differs from {name!r} in the URL"
            )
        record = parse(self.model, payload).model_dump(mode="json")
        record["name"] = name
        existed = self.store.get(self.key_of(name)) is not None
        self.store.put(self.key_of(name), record)
        return record, not existed

    def delete(self, name: str) -> None:
        """Delete the registration and its status in one transaction."""
        if self.store.get(self.key_of(name)) is None:
            raise self.missing(name)
        ops: list[Delete | Put] = [Delete(self.key_of(name))]
        if self.store.get(f"{self.status_prefix}{name}") is not None:
            ops.append(Delete(f"{self.status_prefix}{name}"))
        try:
            self.store.txn(ops)
        except KeyNotFoundError:
            raise self.missing(name) from None
        self.liveness.forget(self.kind, name)
        self._written.pop(name, None)

    def report(self, name: str, status: JSON, *, store: bool = True) -> bool:
        """Keep what the agent of ``name`` reports; store it only when its state changed.

        ``store=False`` (the event loop's thread): record it only if that needs
        no store access (the agent is known and its state unchanged); False if
        not, and nothing was done."""
        state = durable_state(status)
        known = self.liveness.last(self.kind, name) is not None and self._written.get(name) == state
        if known:
            self.liveness.beat(self.kind, name, status)
            return True
        if not store:
            return False
        if (
            self.liveness.last(self.kind, name) is None
            and self.store.get(self.key_of(name)) is None
        ):
            raise self.missing(name)
        stamped = self.liveness.beat(self.kind, name, status)
        if name not in self._written:
            kv = self.store.get(f"{self.status_prefix}{name}")
            if kv is not None:
                self._written[name] = durable_state(kv.value)
        if self._written.get(name) != state:
            self.store.put(
                f"{self.status_prefix}{name}", {"heartbeat_at": stamped["heartbeat_at"], **state}
            )
            self._written[name] = state
        return True


class FabricService:
    """The /v1 fabric semantics over the store (stateless: servers may share a store)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._statuses = AppliedStatuses()
        self._grace: tuple[float, float] | None = None  # (grace, when it was read)
        # Shared by hosts and gateways (on etcd: one renewer for every lease).
        self.liveness = for_store(store, self.grace)
        self.hosts = Registry(
            store, "host", HostRegistration, keys.host_key, HOST_STATUS, host_view, self.liveness
        )
        self.gateways = Registry(
            store,
            "gateway",
            GatewayRegistration,
            keys.gateway_key,
            GATEWAY_STATUS,
            gateway_view,
            self.liveness,
        )
        # Told of each port whose status a heartbeat changed, with its new
        # value (the Nova notifier, nova/events.py).
        self.status_changed: list[Callable[[JSON], None]] = []

    def config(self) -> JSON:
        return read_fabric(self.store)

    def grace(self) -> float:
        """The configured grace, read at most every ``GRACE_CACHE_S`` (the lease TTL)."""
        now = time.monotonic()
        if self._grace is None or now - self._grace[1] > GRACE_CACHE_S:
            self._grace = (grace_s(read_fabric(self.store)), now)
        return self._grace[0]

    def close(self) -> None:
        """Stop the liveness's background work (the store stays open)."""
        self.liveness.close()

    def set_config(self, payload: Any) -> JSON:
        config = parse(FabricConfig, payload).model_dump(mode="json")
        self.store.put(keys.FABRIC_CONFIG, config)
        return config

    def host_heartbeat(self, name: str, payload: Any, *, store: bool = True) -> JSON | None:
        """Keep a host's report and apply its ports' statuses; names the ports that changed.

        ``store=False``: only if that needs no store access (the event loop's
        thread, api/heartbeats.py), else None and nothing was done."""
        beat = parse(HostHeartbeat, payload)
        reported = [
            (port_id, status)
            for port_id, status in beat.ports.items()
            if not self._statuses.fresh(name, port_id, status)
        ]
        if reported and not store:
            return None
        report = beat.model_dump(mode="json", exclude={"ports"})
        if not self.hosts.report(name, report, store=store):
            return None
        changed = set_statuses(self.store, name, dict(reported))
        for port_id, status in reported:
            self._statuses.applied(name, port_id, status)
        for port_id in changed if self.status_changed else ():
            kv = self.store.get(keys.neutron_key("ports", port_id))
            if kv is None:
                continue  # deleted since
            for hook in self.status_changed:
                hook(kv.value)
        return {"host": name, "ports_changed": sorted(changed)}

    def drain_gateway(self, name: str, drain: bool) -> JSON:
        """Set gateway ``name``'s ``drain`` (its agent withdraws, or announces again)."""
        kv = self.gateways.store.get(keys.gateway_key(name))
        if kv is None:
            raise self.gateways.missing(name)
        record = {**kv.value, "drain": drain}
        self.store.put(keys.gateway_key(name), record)
        return record

    def gateway_heartbeat(self, name: str, payload: Any, *, store: bool = True) -> JSON | None:
        """Keep a gateway's report (``store``: as for ``host_heartbeat``)."""
        beat = parse(GatewayHeartbeat, payload)
        if not self.gateways.report(name, beat.model_dump(mode="json"), store=store):
            return None
        return {"gateway": name}
