"""The security-group part of a pass costs what the change costs, and equals a full computation.

``sg_plan.desired(view, previous)`` recomputes only the ports, groups and
memberships whose objects changed; ``ops`` then diffs only what it changed
and ``applied`` updates only that. For random change sequences the
incremental state, rendering, operation and table must equal what a
computation from scratch gives.
"""

from __future__ import annotations

import random
import time
import uuid

import pytest

from l3fabric.agent import sg_plan
from l3fabric.agent.ops import SecurityGroupsApply
from l3fabric.client import HostState
from l3fabric.dataplane import sg_render
from l3fabric.dataplane.links import tap_name
from l3fabric.dataplane.sg_diff import Changed, listing_of
from l3fabric.dataplane.sg_model import build_state
from l3fabric.dataplane.sg_render import remote_set, render

GROUPS = [f"{i:08x}-aaaa-bbbb-cccc-dddddddddddd" for i in range(4)]


def _pid(i: int) -> str:
    return str(uuid.UUID(int=(i + 1) << 100 | 7))


def _rules(rng: random.Random, group: str) -> list[dict]:
    found = []
    for n in range(rng.randrange(0, 4)):
        rule = {"id": f"{group}-{n}", "direction": rng.choice(["ingress", "egress"])}
        rule["ethertype"] = rng.choice(["IPv4", "IPv6"])
        kind = rng.random()
        if kind < 0.4:
            rule["remote_group_id"] = rng.choice(GROUPS)
        elif kind < 0.6:
            rule |= {
                "protocol": "tcp",
                "port_range_min": 22,
                "port_range_max": rng.choice([22, 80]),
            }
        elif kind < 0.7:
            rule["protocol"] = "bogus"  # skipped and reported
        found.append(rule)
    return found


def _group(rng: random.Random, group: str) -> dict:
    return {"id": group, "name": group[:8], "security_group_rules": _rules(rng, group)}


def _port(rng: random.Random, i: int) -> dict:
    ips = [{"ip_address": f"10.1.{i // 250}.{i % 250 + 1}"}]
    if rng.random() < 0.3:
        ips.append({"ip_address": f"2001:db8::{i + 1:x}"})
    return {
        "id": _pid(i) if rng.random() > 0.03 else f"bad id {i}",  # no tap: reported
        "fixed_ips": ips,
        "security_groups": rng.sample(GROUPS, rng.randrange(0, 3)),
        "port_security_enabled": rng.random() > 0.15,
    }


def _member(view: HostState, port_id: str, groups: list[str] | None, address: str) -> None:
    event = {"kind": "member", "id": port_id, "type": "delete" if groups is None else "update"}
    event["object"] = {"id": port_id, "security_groups": groups or [], "addresses": [address]}
    view.apply("h1", event)


def _change(rng: random.Random, view: HostState, n: int) -> None:
    """One random change: ports of this host, groups and their rules, members anywhere."""
    kinds = ["add", "delete", "regroup", "security", "status", "rules", "ungroup", "member"]
    kind = rng.choice(kinds)
    pid = rng.choice(sorted(view.ports)) if view.ports else None
    if kind == "add" or pid is None:
        port = _port(rng, n)
        view.ports[port["id"]] = port
    elif kind == "delete":
        del view.ports[pid]
    elif kind == "regroup":  # the watch replaces objects, never edits them
        view.ports[pid] = {**view.ports[pid], "security_groups": rng.sample(GROUPS, 2)}
    elif kind == "status":  # a reported status: a new object, filtered the same
        view.ports[pid] = {**view.ports[pid], "status": rng.choice(["ACTIVE", "DOWN"])}
    elif kind == "security":
        on = view.ports[pid]["port_security_enabled"]
        view.ports[pid] = {**view.ports[pid], "port_security_enabled": not on}
    elif kind == "rules":
        group = rng.choice(GROUPS)
        view.security_groups[group] = _group(rng, group)
    elif kind == "ungroup":
        view.security_groups.pop(rng.choice(GROUPS), None)  # its ports admit nothing by it
    else:  # a port (here or elsewhere) joins, moves or leaves
        groups = None if rng.random() < 0.3 else rng.sample(GROUPS, rng.randrange(1, 3))
        _member(view, f"m{rng.randrange(30)}", groups, f"10.9.{rng.randrange(3)}.{n % 250}")


@pytest.mark.parametrize("room", [sg_render.DEDICATED_MAX, 2])  # 2: pairs move in and out
@pytest.mark.parametrize("seed", range(12))
def test_incremental_security_groups_equal_full(
    seed: int, room: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sg_render, "DEDICATED_MAX", room)
    rng = random.Random(seed)
    view = HostState(security_groups={g: _group(rng, g) for g in GROUPS})
    previous = sg_plan.desired(view)
    current = sg_plan.applied(previous)
    for n in range(60):
        view = view.copy()  # each pass its own copy of the view, as the agent's watcher gives
        _change(rng, view, n + 100)
        want = sg_plan.desired(view, previous)
        full = sg_plan.desired(view)
        reference = build_state(
            view.security_groups.values(), view.ports.values(), view.member_addresses()
        )
        assert want.state.ports == reference.ports
        assert want.state.groups == reference.groups
        assert want.state.members == reference.members
        assert sorted(want.state.errors) == sorted(reference.errors)
        assert want.rendered == render(reference)
        assert want.state == full.state
        # Incremental: only what changed is compared; full: everything. Same operation.
        got = sg_plan.ops(want, current, previous.rendered)
        assert got == sg_plan.ops(full, current, previous.rendered)
        table = sg_plan.applied(want, current, previous.rendered)
        assert table == listing_of(want.rendered)
        previous, current = want, table


def _host(ports: int) -> HostState:
    group = GROUPS[0]
    rules = [
        {"id": "r1", "direction": "ingress", "ethertype": "IPv4", "remote_group_id": group},
        {"id": "r2", "direction": "egress", "ethertype": "IPv4"},
    ]
    view = HostState(security_groups={group: {"id": group, "security_group_rules": rules}})
    for i in range(ports):
        address = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        port = {"id": _pid(i), "fixed_ips": [{"ip_address": address}], "security_groups": [group]}
        view.ports[port["id"]] = port
        view.members[port["id"]] = {"id": port["id"], "security_groups": [group]}
        view.members[port["id"]]["addresses"] = [address]
    return HostState(security_groups=view.security_groups, ports=view.ports, members=view.members)


def test_one_new_port_on_a_big_host_is_one_small_transaction() -> None:
    view = _host(10_000)
    previous = sg_plan.desired(view)
    current = sg_plan.applied(previous)
    view = view.copy()  # the next pass's own copy, as the agent's watcher gives
    # The statuses the first pass reports come back as 10,000 new objects.
    for port_id, port in list(view.ports.items()):
        view.ports[port_id] = {**port, "status": "ACTIVE"}
    new = {"id": _pid(20_000), "fixed_ips": [{"ip_address": "10.200.0.1"}]}
    new["security_groups"] = [GROUPS[0]]
    view.ports[new["id"]] = new
    _member(view, new["id"], [GROUPS[0]], "10.200.0.1")
    start = time.perf_counter()
    want = sg_plan.desired(view, previous)
    (op,) = sg_plan.ops(want, current, previous.rendered)
    sg_plan.applied(want, current, previous.rendered)
    took = time.perf_counter() - start
    print(f"SG work, one new port at 10,000 after 10,000 statuses: {took * 1000:.2f} ms")
    tap = tap_name(new["id"])
    # The pass compared that port's verdicts and one member set; its chains are
    # the ones every port of its group already uses: none written.
    assert want.changed == Changed(
        chains=frozenset(),
        sets=frozenset({remote_set(GROUPS[0], 4)}),
        taps=frozenset({tap}),
    )
    assert isinstance(op, SecurityGroupsApply)
    assert op.taps == {tap}
    assert op.transaction.chains == ()
    assert len(want.rendered.chains) == 2 + 2 + 2  # base, the group's, one shared port pair
    assert not op.transaction.full and not op.transaction.narrowed
    # The port's two verdicts and its address in the member set: nothing else.
    lines = op.transaction.script.splitlines()
    assert all(tap in line or "10.200.0.1" in line for line in lines), lines
    assert len(lines) == 2 + 1
    # The next port, with no statuses in between.
    view = view.copy()
    other = {**new, "id": _pid(20_001), "fixed_ips": [{"ip_address": "10.200.0.2"}]}
    view.ports[other["id"]] = other
    _member(view, other["id"], [GROUPS[0]], "10.200.0.2")
    current = sg_plan.applied(want, current, previous.rendered)
    start = time.perf_counter()
    then = sg_plan.desired(view, want)
    (op,) = sg_plan.ops(then, current, want.rendered)
    sg_plan.applied(then, current, want.rendered)
    print(f"SG work, the next new port: {(time.perf_counter() - start) * 1000:.2f} ms")
    assert op.taps == {tap_name(other["id"])}


def test_a_member_merged_with_another_into_one_prefix_admits_more_and_leaving_admits_less() -> None:
    view = _host(3)  # members 10.0.0.0, 10.0.0.1, 10.0.0.2
    previous = sg_plan.desired(view)
    current = sg_plan.applied(previous)
    view = view.copy()
    new = {"id": _pid(3), "fixed_ips": [{"ip_address": "10.0.0.3"}], "security_groups": GROUPS[:1]}
    view.ports[new["id"]] = new
    _member(view, new["id"], GROUPS[:1], "10.0.0.3")
    joined = sg_plan.desired(view, previous)
    assert joined.rendered.sets[remote_set(GROUPS[0], 4)][1] == ("10.0.0.0/30",)
    (op,) = sg_plan.ops(joined, current, previous.rendered)
    assert not op.transaction.narrowed  # /31 and /32 became /30: no conntrack pruning
    current = sg_plan.applied(joined, current, previous.rendered)
    view = view.copy()
    _member(view, _pid(1), None, "10.0.0.1")
    left = sg_plan.desired(view, joined)
    (op,) = sg_plan.ops(left, current, joined.rendered)
    assert op.transaction.narrowed  # 10.0.0.1 no longer admitted: its flows are cut


def test_joining_a_group_admits_more_and_leaving_it_may_admit_less() -> None:
    """A port that joins a group moves to its new groups' chain pair: no pruning; back: pruning."""
    view = _host(3)
    other = {"id": "r9", "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp"}
    view.security_groups[GROUPS[1]] = {"id": GROUPS[1], "security_group_rules": [other]}
    port_id = _pid(0)
    address = view.ports[port_id]["fixed_ips"][0]["ip_address"]
    previous = sg_plan.desired(view)
    current = sg_plan.applied(previous)

    view = view.copy()  # each pass its own copy of the view
    view.ports[port_id] = {**view.ports[port_id], "security_groups": GROUPS[:2]}
    _member(view, port_id, GROUPS[:2], address)
    joined = sg_plan.desired(view, previous)
    (op,) = sg_plan.ops(joined, current, previous.rendered)
    assert not op.transaction.full and not op.transaction.narrowed  # no conntrack pruning
    current = sg_plan.applied(joined, current, previous.rendered)

    view = view.copy()
    view.ports[port_id] = {**view.ports[port_id], "security_groups": GROUPS[:1]}
    _member(view, port_id, GROUPS[:1], address)
    left = sg_plan.desired(view, joined)
    (op,) = sg_plan.ops(left, current, joined.rendered)
    assert op.transaction.narrowed  # flows only GROUPS[1] admitted must be cut
