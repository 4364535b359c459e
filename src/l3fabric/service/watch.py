"""The watch: what a host's agent is told, as a snapshot and as events.

The one place for the rules of which store changes a host H sees: its own
ports (bound to H, or no longer), the fabric configuration, networks,
subnets, security groups (with their rules), hosts and gateways (everyone),
the security group members (everyone: a slim record per port in a group,
see ``member_record``) and the anycast groups with a member bound to H
(gateways: every group). Status reports and IPAM never wake a watch.
``watch_blocking`` is the long poll over ``store.watch``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from l3fabric import keys
from l3fabric.record_check import material
from l3fabric.service.anycast import groups_with
from l3fabric.service.errors import Gone, bad_request
from l3fabric.service.fabric import check_name, fabric_value
from l3fabric.store import CompactedError, Event, Store

JSON = dict[str, Any]

WATCH_DEFAULT_TIMEOUT_S = 25.0
WATCH_MAX_TIMEOUT_S = 55.0
# How long one blocking store.watch call may last, so a watch notices shutdown.
_WATCH_SLICE_S = 1.0


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
    security_groups, _ = store.range(_SECURITY_GROUPS)
    fabric_kvs, _ = store.range("/fabric/")
    by_key = {kv.key: kv.value for kv in fabric_kvs}
    hosts = [kv.value for kv in fabric_kvs if kv.key.startswith(keys.HOSTS)]
    # Gateways weight anycast next hops, so they get every group; a host only
    # the groups with a member bound to it. A gateway also gets every bound
    # port: it accepts an address only from the host it is bound to.
    everything = keys.gateway_key(host) in by_key
    local = [kv.value for kv in ports if sees_port(kv.value, host, everything)]
    local_ids = {p["id"] for p in local}
    groups = [kv.value for kv in fabric_kvs if kv.key.startswith(keys.ANYCAST)]
    return {
        "revision": revision,
        "fabric": fabric_value(by_key.get(keys.FABRIC_CONFIG)),
        "host": by_key.get(keys.host_key(host)),
        "gateways": [kv.value for kv in fabric_kvs if kv.key.startswith(keys.GATEWAYS)],
        "hosts": [h for h in hosts if h.get("name") != host],
        "networks": [kv.value for kv in networks],
        "subnets": [kv.value for kv in subnets],
        "ports": local,
        "security_groups": [kv.value for kv in security_groups],
        "members": [m for kv in ports if (m := member_record(kv.value)) is not None],
        "anycast": [g for g in groups if everything or concerns(g, local_ids)],
    }


_PORTS = keys.neutron_prefix("ports")
_SECURITY_GROUPS = keys.neutron_prefix("security-groups")
_BROADCAST_KINDS = {
    keys.neutron_prefix("networks"): "network",
    keys.neutron_prefix("subnets"): "subnet",
    # A group embeds its rules and a rule's write bumps its group, so the
    # rules' own keys need not be watched.
    _SECURITY_GROUPS: "security_group",
    keys.GATEWAYS: "gateway",
    keys.HOSTS: "host",
}


def sees_port(port: JSON | None, host: str, everything: bool = False) -> bool:
    """Whether ``host``'s watch holds ``port``: bound to it (a gateway: bound to any host)."""
    if port is None:
        return False
    bound = port.get("binding:host_id")
    return bound == host or (everything and bool(bound))


def relevant_event(event: Event, host: str, everything: bool = False) -> dict[str, Any] | None:
    """The watch event ``host``'s agent sees for a store change, or None (``everything``: a gateway)."""
    if event.key.startswith(_PORTS):
        return port_event(event, host, everything)
    return shared_event(event)


def port_event(event: Event, host: str, everything: bool = False) -> dict[str, Any] | None:
    """The ``port`` watch event ``host`` sees for a port change, or None."""
    if not event.key.startswith(_PORTS):
        return None
    port_id = event.key[len(_PORTS) :]
    now = sees_port(event.value, host, everything)
    before = sees_port(event.prev_value, host, everything)
    if now and before and material(event.value) == material(event.prev_value):
        # A status report (the host's own, most often): nothing a host programs
        # changed, so it wakes nobody (each new port's ACTIVE report woke its host).
        return None
    if now:
        return _event("put", "port", port_id, event.revision, event.value)
    if before:
        # Moved to another host, unbound or deleted: gone as far as this host knows.
        return _event("delete", "port", port_id, event.revision, None)
    return None


def shared_event(event: Event) -> dict[str, Any] | None:
    """The watch event every host sees alike for a change that is not a port's, or None."""
    if event.key == keys.FABRIC_CONFIG:
        value = event.value if event.type == "put" else None
        return _event("put", "fabric", "fabric", event.revision, fabric_value(value))
    for prefix, kind in _BROADCAST_KINDS.items():
        if event.key.startswith(prefix):
            if event.type == "put" and event.value == event.prev_value:
                return None  # a rewrite of the same registration changes nothing
            return _event(event.type, kind, event.key[len(prefix) :], event.revision, event.value)
    return None


def shared_events(events: list[Event]) -> list[dict[str, Any]]:
    """The watch events of a batch that every host sees alike (all but ports and anycast groups)."""
    return [
        found
        for ev in events
        for found in (None if ev.key.startswith(_PORTS) else shared_event(ev), member_event(ev))
        if found is not None
    ]


def host_events(
    store: Store, events: list[Event], host: str, everything: bool, anycast: bool = True
) -> list[dict[str, Any]]:
    """The watch events of a batch that are ``host``'s own: its ports and anycast groups
    (``anycast``: False when the caller knows the batch touches no group nor member)."""
    found = [e for ev in events if (e := port_event(ev, host, everything)) is not None]
    return found + anycast_events(store, events, host, everything) if anycast else found


def concerned_hosts(store: Store, events: list[Event]) -> set[str]:
    """The hosts (gateways aside) that may have ``host_events`` in a batch: where its
    ports were and are bound, and where the members of its anycast groups are.

    This is the index a controller fans a change out by: a host outside this
    set sees only the batch's ``shared_events``."""
    hosts: set[str] = set()
    members: set[str] = set()
    for e in events:
        if e.key.startswith(_PORTS):
            for port in (e.prev_value, e.value):
                if port and port.get("binding:host_id"):
                    hosts.add(port["binding:host_id"])
        elif e.key.startswith(keys.ANYCAST):
            for group in (e.prev_value, e.value):
                members.update((group or {}).get("members", ()))
    return hosts | _member_hosts(store, members)


def relevant_events(store: Store, events: list[Event], host: str) -> list[dict[str, Any]]:
    """The watch events ``host``'s agent sees for a batch of store changes.

    ``relevant_event`` and ``member_event`` for each change, then the anycast groups the batch
    touched for this host (kind ``anycast``): which groups concern a host
    depends on where their member ports are bound, so it needs the store.
    """
    if not events:
        return []
    everything = store.get(keys.gateway_key(host)) is not None
    found = []
    for ev in events:
        found += [
            e for e in (relevant_event(ev, host, everything), member_event(ev)) if e is not None
        ]
    found += anycast_events(store, events, host, everything)
    return found


def member_record(port: JSON | None) -> JSON | None:
    """What every host knows of a port in security groups, wherever it is bound:
    its id, its groups and its addresses (every fixed IP and every allowed
    address pair, canonical as stored), so that a rule with a
    ``remote_group_id`` can match its members. None for a port in no group."""
    if port is None or not port.get("security_groups"):
        return None
    addresses = {f["ip_address"] for f in port.get("fixed_ips", ())}
    addresses |= {p["ip_address"] for p in port.get("allowed_address_pairs", ())}
    return {
        "id": port["id"],
        "security_groups": list(port["security_groups"]),
        "addresses": sorted(addresses),
    }


def member_event(event: Event) -> dict[str, Any] | None:
    """The ``member`` watch event every host sees for a port change, or None.

    Only a change of the slim record counts: a status report, a rename or a
    move to another host changes no membership, so it wakes nobody. A port
    that goes or leaves its last group is a delete.
    """
    if not event.key.startswith(_PORTS):
        return None
    before, after = member_record(event.prev_value), member_record(event.value)
    if before == after:
        return None
    port_id = event.key[len(_PORTS) :]
    if after is None:
        return _event("delete", "member", port_id, event.revision, None)
    return _event("put", "member", port_id, event.revision, after)


def _event(type_: str, kind: str, id_: str, revision: int, obj: Any) -> dict[str, Any]:
    return {"type": type_, "kind": kind, "id": id_, "revision": revision, "object": obj}


def check_watch(host: str, since: int | None, timeout: float) -> None:
    """400 for a watch request that cannot be served as asked."""
    check_name("host", host)
    if since is not None and since < 0:
        raise bad_request("since must be a revision (0 or more)")
    if since is not None and not 0 <= timeout <= WATCH_MAX_TIMEOUT_S:
        raise bad_request(f"timeout must be between 0 and {WATCH_MAX_TIMEOUT_S:g} seconds")


def watch_blocking(
    store: Store, host: str, since: int, timeout: float, stopping: threading.Event | None = None
) -> dict[str, Any]:
    """Long-poll: the events after ``since`` that concern ``host``, as soon as there are any.

    Irrelevant changes (IPAM, status reports, other hosts' ports beyond their
    group membership) are skipped
    without returning, so they cost a watcher nothing but a filter pass.
    Raises Gone when ``since`` is older than the history (or newer than the
    store: it was replaced): the client must take a new snapshot.
    """
    try:
        return _watch(store, host, since, timeout, stopping)
    except CompactedError as exc:
        raise Gone(
            "ResyncRequired", f"{exc}; take a new snapshot (GET /v1/watch?host={host})"
        ) from None


def _watch(
    store: Store, host: str, since: int, timeout: float, stopping: threading.Event | None
) -> dict[str, Any]:
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


# Anycast groups ----------------------------------------------------------------


def _member_hosts(store: Store, port_ids: Iterable[str]) -> set[str]:
    """The hosts the ports are bound to (a member port that is gone counts for none)."""
    hosts = set()
    for port_id in port_ids:
        kv = store.get(keys.neutron_key("ports", port_id))
        if kv is not None and kv.value.get("binding:host_id"):
            hosts.add(kv.value["binding:host_id"])
    return hosts


def concerns(group: JSON, local_ports: set[str]) -> bool:
    """Whether a host whose bound ports are ``local_ports`` must know ``group``."""
    return bool(local_ports.intersection(group.get("members", ())))


def anycast_events(store: Store, events: list[Event], host: str, everything: bool) -> list[JSON]:
    """The anycast watch events for ``host`` caused by a batch of store events.

    ``everything`` (gateways) passes every group change through. A host sees a
    group while one of its members is bound to it; that changes when the group
    changes or when a port moves to or from the host, so both re-evaluate the
    group against the store as it is now. The object sent is the current one,
    and any later change comes as a later event that is evaluated again, so a
    client applying the events in order converges to the truth.
    """
    if everything:
        return [
            _event(e.type, "anycast", e.key[len(keys.ANYCAST) :], e.revision, e.value)
            for e in events
            if e.key.startswith(keys.ANYCAST) and not (e.type == "put" and e.value == e.prev_value)
        ]
    touched: dict[str, Event] = {}
    moved: set[str] = set()
    for e in events:
        if e.key.startswith(keys.ANYCAST):
            touched[e.key[len(keys.ANYCAST) :]] = e
        elif e.key.startswith(_PORTS):
            before = (e.prev_value or {}).get("binding:host_id")
            after = (e.value or {}).get("binding:host_id")
            if host in (before, after) and (
                e.value is None or e.prev_value is None or before != after
            ):
                moved.add(e.key[len(_PORTS) :])
    last_revision = events[-1].revision if events else 0
    # Group id -> whether the host may hold it, so a delete it needs is sent
    # and one it cannot need does not wake it.
    candidates: dict[str, bool] = {}
    for group_id, e in touched.items():
        members = [*(e.prev_value or {}).get("members", ()), *(e.value or {}).get("members", ())]
        candidates[group_id] = bool(moved.intersection(members)) or host in _member_hosts(
            store, members
        )
    if moved:
        for group in groups_with(store, moved):
            candidates[group["id"]] = True
    out = []
    for group_id, maybe_known in candidates.items():
        kv = store.get(keys.anycast_key(group_id))
        if kv is not None and host in _member_hosts(store, kv.value["members"]):
            out.append(_event("put", "anycast", group_id, last_revision, kv.value))
        elif maybe_known:
            out.append(_event("delete", "anycast", group_id, last_revision, None))
    return out
