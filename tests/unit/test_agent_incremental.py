"""An incremental pass computes what a full pass would: random changes, both ways, compared.

``desired_state(..., previous, taps)`` recomputes only the ports that changed
or whose tap did, and anycast from the groups, their members and the pair
ports; ``plan`` and ``after`` then compare only what it touched. For each
random change (ports, taps, anycast groups and members, probe verdicts,
allowed address pairs) the incremental desired state, its plan, the host it
leaves and the statuses must equal the full computation's.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from l3fabric.agent.desired import ENDPOINT_FIELDS, host_prefix, same_endpoint
from l3fabric.agent.observed import Observed, TapState
from l3fabric.agent.ops import Op
from l3fabric.agent.plan import (
    DesiredHost,
    after,
    desired_state,
    endpoint_counts,
    plan,
    status_keys,
    statuses,
)
from l3fabric.client import HostState
from l3fabric.dataplane.links import IFF_UP, LinkInfo, tap_name

from .agent_ports import port

HOST = {"name": "h1", "router_id": "172.17.0.2", "address": "172.16.0.2", "asn": None, "peers": None}  # fmt: skip
GW = {"name": "gw", "router_id": "172.17.0.1", "asn": None, "fabric_addresses": ["172.16.0.0"]}


def _view(ports: dict[str, dict], groups: dict[str, dict] | None = None) -> HostState:
    return HostState(
        fabric={"asn": 65000},
        host=HOST,
        gateways={"gw": GW},
        ports=dict(ports),
        anycast=dict(groups or {}),
    )


def _pid(i: int) -> str:
    return f"{i:08x}-1111-2222-3333-444444444444"


# Anycast addresses: a few, so that groups and pairs share them; 10.1.0.1 is
# also port 0's fixed IP (an endpoint is never anycast).
ANYCAST = ["10.100.0.1", "10.100.0.2", "2001:db8:100::1", "10.1.0.1"]


def _pairs(rng: random.Random) -> tuple[str, ...]:
    """Allowed address pairs: anycast (host-length) or not (a subnet, a port's own IP)."""
    choices = [*(host_prefix(a) for a in ANYCAST), "10.7.0.0/24", "10.1.0.2"]
    return tuple(rng.sample(choices, rng.choice([1, 1, 2])))


def _new_port(rng: random.Random, i: int) -> dict:
    ips = [f"10.1.{i // 250}.{i % 250 + 1}"]
    if rng.random() < 0.3:
        ips.append(f"2001:db8::{i + 1:x}")
    if rng.random() < 0.05:
        ips = ["10.1.0.999"]  # a bad port: named in the errors, the rest programmed
    pairs = _pairs(rng) if rng.random() < 0.15 else ()
    return port(_pid(i), *ips, pairs=pairs, up=rng.random() < 0.9)


def _group(rng: random.Random, gid: str, members: list[str]) -> dict:
    check = rng.choice([{"type": "tcp", "port": 80}, {"type": "icmp"}, None, {"type": "bad"}])
    return {"id": gid, "address": rng.choice(ANYCAST), "members": members, "health_check": check}


@dataclasses.dataclass
class _Host:
    """The controller's view and the host's links and probes, changed at random."""

    ports: dict[str, dict]
    taps: dict[str, TapState]
    groups: dict[str, dict]
    verdicts: dict[tuple[str, str], bool]


def _tap(rng: random.Random) -> TapState:
    return TapState(LinkInfo(rng.randrange(10, 10**6), IFF_UP if rng.random() < 0.5 else 0, {}))


def _anycast_change(rng: random.Random, h: _Host, kind: str, pid: str) -> None:
    """Groups join, leave, come and go; probes change their verdict; pairs change."""
    gid = rng.choice(sorted(h.groups)) if h.groups else None
    if kind == "group" or gid is None:
        if gid is not None and rng.random() < 0.4:
            del h.groups[gid]
        else:
            new = f"g{len(h.groups)}-{rng.randrange(10**6)}"
            h.groups[new] = _group(rng, new, rng.sample(sorted(h.ports), min(3, len(h.ports))))
    elif kind == "join":  # a new group object, as the watch replaces it
        h.groups[gid] = {**h.groups[gid], "members": [*h.groups[gid]["members"], pid]}
    elif kind == "leave":
        members = h.groups[gid]["members"]
        h.groups[gid] = {**h.groups[gid], "members": members[1:]}
    elif kind == "probe":
        members = h.groups[gid]["members"] or [pid]
        key = (gid, rng.choice(members))
        h.verdicts[key] = not h.verdicts.get(key, rng.random() < 0.5)
    else:  # "pairs"
        h.ports[pid] = {**h.ports[pid], "allowed_address_pairs": [{"ip_address": a} for a in _pairs(rng)] if rng.random() < 0.7 else []}  # fmt: skip


def _change(rng: random.Random, h: _Host, n: int) -> set[str]:
    """One random change of the view, the taps or the probes; returns the taps it touched."""
    ports, taps = h.ports, h.taps
    kinds = ["add", "delete", "readdress", "admin", "status", "plug", "unplug", "replug"]
    kind = rng.choice([*kinds, "group", "join", "leave", "probe", "probe", "pairs"])
    pid = rng.choice(sorted(ports)) if ports else None
    if kind == "add" or pid is None:
        p = _new_port(rng, n)
        ports[p["id"]] = p
        if rng.random() < 0.5:
            taps[tap_name(p["id"])] = _tap(rng)
        return {tap_name(p["id"])}
    tap = tap_name(pid)
    if kind not in kinds:
        _anycast_change(rng, h, kind, pid)
        return set()
    if kind == "delete":
        del ports[pid]
        if rng.random() < 0.5:
            taps.pop(tap, None)
    elif kind == "readdress":
        ips = rng.choice([[f"10.2.{n // 250}.{n % 250 + 1}"], [rng.choice(ANYCAST)]])
        ports[pid] = {**ports[pid], "fixed_ips": [{"ip_address": ip} for ip in ips]}
    elif kind == "admin":
        ports[pid] = {**ports[pid], "admin_state_up": not ports[pid]["admin_state_up"]}
    elif kind == "status":  # a reported status: a new object, the same endpoint
        ports[pid] = {**ports[pid], "status": rng.choice(["ACTIVE", "DOWN"])}
        return set()
    elif kind == "plug" or kind == "replug":
        taps[tap] = _tap(rng)
    else:
        taps.pop(tap, None)
    return {tap}


def _refresh(model: Observed, h: _Host, changed: set[str]) -> Observed:
    """What ``HostReader.refresh`` reads: the changed taps anew (routes and anycast
    nexthops through gone links lost) and the probes' verdicts."""
    new = dict(model.taps)
    routes = dict(model.routes)
    serving = dict(model.anycast)
    for name in changed:
        old = new.pop(name, None)
        if name in h.taps:
            new[name] = h.taps[name]
        if old is not None and (name not in h.taps or h.taps[name].info.index != old.info.index):
            routes = {p: (None if t == name else t) for p, t in routes.items()}
            serving = {p: t - {name} for p, t in serving.items()}
    return dataclasses.replace(
        model, taps=new, routes=routes, anycast=serving, verdicts=dict(h.verdicts)
    )


def _normal(ops: list[Op]) -> list[tuple[str, dict]]:
    """Ops with their tuples as sets: the order inside one op is not behaviour."""

    def norm(value: object) -> object:
        return sorted(value, key=repr) if isinstance(value, tuple) else value

    return [(type(o).__name__, {k: norm(v) for k, v in vars(o).items()}) for o in ops]


def _full_equivalent(d: DesiredHost) -> DesiredHost:
    return dataclasses.replace(d, touched=None, sources=dict(d.sources), errors=tuple(sorted(d.errors)))  # fmt: skip


@pytest.mark.parametrize("seed", range(20))
def test_incremental_passes_equal_full_ones(seed: int) -> None:
    rng = random.Random(seed)
    ports = {p["id"]: p for p in (_new_port(rng, i) for i in range(30))}
    taps = {tap_name(pid): _tap(rng) for pid in ports if rng.random() < 0.7}
    h = _Host(ports, taps, {}, {})
    for i in range(rng.choice([0, 1, 2])):
        h.groups[f"g{i}"] = _group(rng, f"g{i}", rng.sample(sorted(ports), 3))
    h.verdicts = {(g, m): rng.random() < 0.7 for g in h.groups for m in h.groups[g]["members"]}
    # A restarted agent: the kernel serves what an earlier one programmed.
    presumed = {host_prefix(g["address"]): frozenset(tap_name(m) for m in g["members"][:2]) for g in h.groups.values()}  # fmt: skip
    base = Observed(taps=dict(taps), bird_running=True, anycast=presumed, verdicts=dict(h.verdicts))
    previous = desired_state("h1", _view(ports, h.groups), base)
    model = after(previous, base)
    reported = statuses(previous, set())
    counts = endpoint_counts(previous, reported)
    incremental_passes = anycast_passes = 0
    for n in range(30, 110):
        changed = set()
        for _ in range(rng.choice([1, 1, 2, 3])):
            changed |= _change(rng, h, n)
        view = _view(ports, h.groups)
        # The agent re-reads the changed taps and those of changed ports.
        reread = changed | {tap_name(p) for p in ports if ports[p] is not previous.sources.get(p)}
        reread |= {tap_name(p) for p in previous.sources if p not in ports}
        observed = _refresh(model, h, reread)
        # What the watch tells the agent: the ports its answers carried (a
        # superset of those that changed: replays, other fields).
        hint = {p for p in ports.keys() | previous.sources.keys() if ports.get(p) is not previous.sources.get(p)}  # fmt: skip
        hint |= set(rng.sample(sorted(ports), min(2, len(ports))))
        hinted = desired_state("h1", view, observed, previous, reread, hint=hint)
        inc = desired_state("h1", view, observed, previous, reread)
        assert hinted == inc
        full = desired_state("h1", view, observed, previous)
        assert _full_equivalent(inc) == _full_equivalent(full)
        assert _normal(plan(inc, observed)) == _normal(plan(full, observed))
        assert after(inc, observed) == after(full, observed)
        now = statuses(inc, set(), reported)
        assert now == statuses(full, set())
        # Counted from the touched ports only: as counted from all of them.
        counted = endpoint_counts(inc, now, status_keys(inc, set()), (previous, reported, counts))
        assert counted == endpoint_counts(full, now)
        incremental_passes += inc.touched is not None
        anycast_passes += inc.touched is not None and bool(inc.anycast.serving or inc.pair_ports)
        previous, model, reported, counts = inc, after(inc, observed), now, counted
    assert incremental_passes > 60  # most passes took the incremental path
    assert anycast_passes > 20 or not h.groups  # many of them with anycast on the host


@pytest.mark.parametrize("anycast", [False, True])
def test_one_new_port_on_a_big_host_touches_only_that_port(anycast: bool) -> None:
    ports = {_pid(i): port(_pid(i), f"10.{i // 62500}.{i // 250 % 250}.{i % 250 + 1}") for i in range(10_000)}  # fmt: skip
    groups, verdicts = {}, {}
    if anycast:  # a native group with probed members, and VIP holders (pair ports)
        members = [_pid(i) for i in range(10, 14)]
        groups = {"g1": {"id": "g1", "address": "10.100.0.1", "members": members, "health_check": {"type": "tcp", "port": 80}}}  # fmt: skip
        verdicts = {("g1", m): True for m in members}
        for i in range(5):
            ports[_pid(i)] = port(_pid(i), f"10.0.0.{i + 1}", pairs=("10.200.0.1",))
    taps = {tap_name(pid): TapState(LinkInfo(i + 10, IFF_UP, {}), prepared=True) for i, pid in enumerate(ports)}  # fmt: skip
    base = Observed(taps=taps, bird_running=True, verdicts=verdicts)
    first = desired_state("h1", _view(ports, groups), base)
    assert first.anycast.announce == ({"10.100.0.1/32": 4, "10.200.0.1/32": 5} if anycast else {})
    model = after(first, base)
    new = port(_pid(10_000), "10.9.9.9")
    ports[new["id"]] = new
    tap = tap_name(new["id"])
    observed = dataclasses.replace(model, taps={**model.taps, tap: TapState(LinkInfo(5, 0, {}))})
    desired = desired_state("h1", _view(ports, groups), observed, first, {tap})
    assert desired.touched is not None and desired.anycast == first.anycast
    assert desired.touched.ports == {new["id"]} and desired.touched.taps == {tap}
    assert desired.touched.prefixes == {"10.9.9.9/32"}
    names = [type(o).__name__ for o in plan(desired, observed)]
    # Its security-group chains, guard, tap, route, announcement: no BIRD configure,
    # no anycast operation, nothing of the other 10,000.
    assert names == [
        "SecurityGroupsApply",
        "GuardElements",
        "TapsPrepare",
        "RoutesSet",
        "EndpointsAnnounce",
    ]


@pytest.mark.parametrize("field", ENDPOINT_FIELDS)
def test_a_port_converts_anew_when_a_field_of_its_endpoint_changes(field: str) -> None:
    old = port(_pid(1), "10.1.0.2", pairs=("10.9.0.0/24",))
    assert same_endpoint(old, {**old, "status": "ACTIVE", "revision_number": 7})
    assert not same_endpoint(old, {**old, field: "changed"})
