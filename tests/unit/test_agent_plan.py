"""The host agent's pass as plain data: desired state, the ordered plan, and its execution.

The appliers are recording fakes; the order rules (guard before route,
announce after route, withdraw before delete) are asserted on what they record.
"""

from __future__ import annotations

import dataclasses

import pytest

from l3fabric.agent.execute import PassMetrics
from l3fabric.agent.observed import Observed, TapState
from l3fabric.agent.ops import (
    AnycastRoutesSet,
    BirdConfigure,
    BirdWithdraw,
    EndpointsAnnounce,
    EndpointsWithdraw,
    GuardElements,
    GuardTable,
    Op,
    Outcome,
    ProbesSet,
    RoutesSet,
    SecurityGroupsApply,
    TapsIpv6Off,
    TapsPrepare,
)
from l3fabric.agent.plan import after, changed_ports, desired_state, plan, statuses
from l3fabric.client import HostState
from l3fabric.dataplane.links import IFF_UP, LinkInfo, tap_name
from l3fabric.dataplane.sysctl import HOST_SYSCTLS
from l3fabric.routing.bird_config import render

from .agent_ports import A, B, C, D, port
from .recording import Recorder

HOST = {"name": "h1", "router_id": "172.17.0.2", "address": "172.16.0.2", "asn": None, "peers": None}  # fmt: skip
GW = {"name": "gw", "router_id": "172.17.0.1", "asn": None, "fabric_addresses": ["172.16.0.0"]}
TCP = {"type": "tcp", "port": 80, "interval_s": 0.5, "timeout_s": 0.2, "rise": 2, "fall": 1}
ANYCAST = "10.1.0.80/32"


def _view(*ports: dict, anycast: dict | None = None) -> HostState:
    return HostState(
        fabric={"asn": 65000},
        host=HOST,
        gateways={"gw": GW},
        ports={p["id"]: p for p in ports},
        anycast={"g1": anycast} if anycast else {},
    )


def _tap(pid: str, index: int, ready: bool = False, ipv6: bool = False) -> tuple[str, TapState]:
    """A tap as a link dump shows it: fresh (down, nothing set) or ready (an earlier agent's work).

    ``ipv6``: it was made ready for a port with IPv6 (IPv6 on, fe80::1).
    """
    tap = tap_name(pid)
    conf = {
        f"/proc/sys/net/ipv4/conf/{tap}/forwarding": "1",
        f"/proc/sys/net/ipv4/conf/{tap}/proxy_arp": "1" if ready else "0",
        f"/proc/sys/net/ipv4/conf/{tap}/rp_filter": "0" if ready else "2",
        f"/proc/sys/net/ipv6/conf/{tap}/forwarding": "1",
        f"/proc/sys/net/ipv6/conf/{tap}/accept_ra": "0" if ready else "1",
        # The kernel's default is IPv6 on; a ready tap has it only for an IPv6 port.
        f"/proc/sys/net/ipv6/conf/{tap}/disable_ipv6": "1" if ready and not ipv6 else "0",
    }
    info = LinkInfo(index, IFF_UP if ready else 0, conf)
    return tap, TapState(info, gateway6=ready and ipv6)


def _converged(view: HostState, **observed: object) -> Observed:
    """What a host left by a pass for ``view`` holds, as the next incremental pass sees it."""
    base = Observed(**observed)  # type: ignore[arg-type]
    return after(desired_state("h1", view, base), base)


def _restarted(view: HostState, taps: dict[str, TapState]) -> Observed:
    """A correct host as a freshly started agent reads it: nothing it remembers."""
    converged = _converged(view, taps=taps, bird_running=True)
    desired = desired_state("h1", view, converged)
    assert desired.bird is not None
    return dataclasses.replace(
        converged,
        taps=taps,
        bird_config=None,
        bird_text=render(desired.bird),
        sysctls=dict(desired.sysctls),
    )


def test_a_new_port_is_guarded_and_prepared_before_its_route_and_announced_after() -> None:
    old = _view(port(A, "10.1.0.2"))
    taps = dict([_tap(A, 5, ready=True)])
    observed = _converged(old, taps=taps, bird_running=True)
    # B's port arrives and its tap is plugged.
    observed = dataclasses.replace(observed, taps={**observed.taps, **dict([_tap(B, 6)])})
    desired = desired_state("h1", _view(port(A, "10.1.0.2"), port(B, "10.1.0.3")), observed)
    rec = Recorder()
    rec.run(plan(desired, observed))

    guard = rec.index(GuardElements, lambda o: (tap_name(B), "10.1.0.3/32") in o.add)
    taps_step = rec.index(TapsPrepare)
    route = rec.index(RoutesSet, lambda o: ("10.1.0.3/32", tap_name(B), 6) in o.replace)
    announce = rec.index(EndpointsAnnounce)
    assert guard < route and taps_step < route < announce
    # Only the new port is touched: A's tap, route and rules are not in any op.
    assert [t for t, _ in rec.ops[taps_step].taps] == [tap_name(B)]
    assert rec.ops[route].replace == (("10.1.0.3/32", tap_name(B), 6),)
    assert rec.ops[announce] == EndpointsAnnounce(add=("10.1.0.3/32",))
    # BIRD's config does not name endpoints: no configure for a new port.
    assert not any(isinstance(o, BirdConfigure | EndpointsWithdraw) for o in rec.ops)
    assert statuses(desired, set()) == {A: "ACTIVE", B: "ACTIVE"}


def test_taps_are_not_written_the_forwarding_that_the_host_sysctls_set_on_every_interface() -> None:
    # A new host: the dump (taken first) shows forwarding off everywhere; the
    # host sysctls, written before the taps, turn it on for every interface.
    tap, fresh = _tap(A, 5)
    off = {path: "0" if path.endswith("/forwarding") else v for path, v in fresh.info.conf.items()}
    taps = {tap: TapState(dataclasses.replace(fresh.info, conf=off))}
    observed = Observed(taps=taps, sysctls={"net.ipv4.ip_forward": "0"})
    ops = plan(desired_state("h1", _view(port(A, "10.1.0.2")), observed), observed)
    (prepare,) = [o for o in ops if isinstance(o, TapsPrepare)]
    ((_, info),) = prepare.taps
    assert info.conf[f"/proc/sys/net/ipv4/conf/{tap}/forwarding"] == "1"
    assert info.conf[f"/proc/sys/net/ipv6/conf/{tap}/forwarding"] == "1"
    assert info.conf[f"/proc/sys/net/ipv4/conf/{tap}/proxy_arp"] == "0"  # still to be written
    # With global forwarding already on, the tap's own setting is what the dump shows.
    observed = Observed(taps=taps, sysctls=dict(HOST_SYSCTLS))
    ops = plan(desired_state("h1", _view(port(A, "10.1.0.2")), observed), observed)
    (prepare,) = [o for o in ops if isinstance(o, TapsPrepare)]
    assert prepare.taps[0][1].conf[f"/proc/sys/net/ipv4/conf/{tap}/forwarding"] == "0"


def _prepared(ops: list[Op]) -> dict[str, bool]:
    """The taps the plan prepares -> with IPv6 turned on."""
    return {tap: tap in o.ipv6 for o in ops if isinstance(o, TapsPrepare) for tap, _ in o.taps}


def _ipv6_off(ops: list[Op]) -> list[str]:
    """The taps the plan turns IPv6 off on."""
    return [tap for o in ops if isinstance(o, TapsIpv6Off) for tap, _ in o.taps]


def test_only_a_port_that_may_send_ipv6_keeps_ipv6_on_its_tap_after_its_route() -> None:
    view = _view(
        port(A, "10.1.0.2"),
        port(B, "10.1.0.3", pairs=("2001:db8::/64",)),
        port(C, "10.1.0.4", "2001:db8:1::4"),
        {**port(D, "10.1.0.5"), "port_security_enabled": False},
    )
    taps = dict([_tap(A, 5), _tap(B, 6), _tap(C, 7), _tap(D, 8)])
    observed = Observed(taps=taps, sysctls=dict(HOST_SYSCTLS))
    rec = Recorder()
    rec.run(plan(desired_state("h1", view, observed), observed))
    assert _prepared(rec.ops) == {tap_name(A): False, tap_name(B): True, tap_name(C): True, tap_name(D): True}  # fmt: skip
    assert _ipv6_off(rec.ops) == [tap_name(A)]
    # Off after the routes and their announcement: not needed to route, and costly in bulk.
    assert rec.index(TapsIpv6Off) > rec.index(EndpointsAnnounce) > rec.index(RoutesSet)
    # The next pass finds it done.
    assert (
        plan(
            desired_state("h1", view, observed),
            after(desired_state("h1", view, observed), observed),
        )
        == []
    )


def test_a_member_of_an_ipv6_anycast_group_keeps_ipv6_on_its_tap() -> None:
    group = {"id": "g1", "address": "2001:db8::80", "members": [A]}
    view = _view(port(A, "10.1.0.2"), port(B, "10.1.0.3"), anycast=group)
    observed = Observed(taps=dict([_tap(A, 5), _tap(B, 6)]), sysctls=dict(HOST_SYSCTLS))
    ops = plan(desired_state("h1", view, observed), observed)
    assert _prepared(ops) == {tap_name(A): True, tap_name(B): False}
    assert _ipv6_off(ops) == [tap_name(B)]


def test_a_tap_whose_ipv6_setting_was_changed_by_hand_is_set_again() -> None:
    view = _view(port(A, "10.1.0.2"), port(B, "10.1.0.3", "2001:db8::3"))
    ready = dict([_tap(A, 5, True), _tap(B, 6, True, ipv6=True)])
    observed = _restarted(view, ready)
    assert plan(desired_state("h1", view, observed), observed) == []
    for pid, value in ((A, "0"), (B, "1")):
        tap, state = _tap(pid, 5, True, ipv6=pid == B)
        path = f"/proc/sys/net/ipv6/conf/{tap}/disable_ipv6"
        drifted = TapState(LinkInfo(5, IFF_UP, {**state.info.conf, path: value}), state.gateway6)
        seen = dataclasses.replace(observed, taps={**ready, tap: drifted})
        ops = plan(desired_state("h1", view, seen), seen)
        assert (_prepared(ops), _ipv6_off(ops)) == (({tap: True}, []) if pid == B else ({}, [tap]))


def _reread(observed: Observed, pid: str, ipv6: bool) -> Observed:
    """``observed`` after an incremental pass read ``pid``'s tap again (its port changed)."""
    tap, dump = _tap(pid, 5, True, ipv6=ipv6)
    state = dataclasses.replace(observed.taps[tap], info=dump.info, gateway6=dump.gateway6)
    return dataclasses.replace(observed, taps={**observed.taps, tap: state})


def test_a_port_that_gains_or_loses_ipv6_has_it_turned_on_or_off_on_its_tap() -> None:
    v4, dual = _view(port(A, "10.1.0.2")), _view(port(A, "10.1.0.2", "2001:db8::2"))
    tap, fresh = _tap(A, 5)
    observed = _converged(v4, taps={tap: fresh}, bird_running=True)
    assert not observed.taps[tap].gateway6  # IPv6 off, so no fe80::1 either
    # The port gains an IPv6 address: IPv6 on and fe80::1 (before its route).
    observed = _reread(observed, A, ipv6=False)
    desired = desired_state("h1", dual, observed)
    assert (_prepared(plan(desired, observed)), _ipv6_off(plan(desired, observed))) == ({tap: True}, [])  # fmt: skip
    observed = after(desired, observed)
    assert observed.taps[tap].gateway6
    assert plan(desired_state("h1", dual, observed), observed) == []
    # It loses it again: IPv6 off (the kernel drops fe80::1 with it), nothing else.
    observed = _reread(observed, A, ipv6=True)
    desired = desired_state("h1", v4, observed)
    ops = plan(desired, observed)
    assert (_prepared(ops), _ipv6_off(ops)) == ({}, [tap])
    assert not after(desired, observed).taps[tap].gateway6


def test_a_deleted_port_is_withdrawn_before_its_route_goes_and_unguarded_last() -> None:
    both = _view(port(A, "10.1.0.2"), port(B, "10.1.0.3"))
    observed = _converged(both, taps=dict([_tap(A, 5, True), _tap(B, 6, True)]), bird_running=True)
    desired = desired_state("h1", _view(port(A, "10.1.0.2")), observed)
    rec = Recorder()
    rec.run(plan(desired, observed))

    withdraw = rec.index(EndpointsWithdraw)
    assert rec.ops[withdraw] == EndpointsWithdraw(prefixes=("10.1.0.3/32",))
    delete = rec.index(RoutesSet, lambda o: "10.1.0.3/32" in o.delete)
    unguard = rec.index(GuardElements, lambda o: (tap_name(B), "10.1.0.3/32") in o.delete)
    assert withdraw < delete < unguard
    # One withdrawal, no configure.
    assert not any(isinstance(o, BirdConfigure | EndpointsAnnounce) for o in rec.ops)


def test_an_anycast_member_failing_is_withdrawn_before_its_route_shrinks() -> None:
    view = _view(
        port(A, "10.1.0.2"),
        port(B, "10.1.0.3"),
        anycast={"id": "g1", "address": "10.1.0.80", "members": [A, B], "health_check": TCP},
    )
    taps = dict([_tap(A, 5, True), _tap(B, 6, True)])
    healthy = {("g1", A): True, ("g1", B): True}
    observed = _converged(view, taps=taps, bird_running=True, verdicts=healthy)
    assert observed.anycast == {ANYCAST: frozenset({tap_name(A), tap_name(B)})}
    # B's probe fails.
    observed = dataclasses.replace(observed, verdicts={("g1", A): True, ("g1", B): False})
    desired = desired_state("h1", view, observed)
    rec = Recorder()
    rec.run(plan(desired, observed))

    withdraw = rec.index(BirdWithdraw)
    assert [(str(r.prefix), r.healthy) for r in rec.ops[withdraw].config.anycast_routes] == [
        (ANYCAST, 1)
    ]
    shrink = rec.index(AnycastRoutesSet)
    assert rec.ops[shrink].serving == ((ANYCAST, (tap_name(A),)),)
    assert withdraw < shrink
    assert not any(isinstance(o, RoutesSet | ProbesSet | TapsPrepare) for o in rec.ops)


def test_a_local_endpoint_is_never_anycast_and_its_address_is_served_once_it_goes() -> None:
    # B holds A's own address as an allowed address pair (a VIP moved to B).
    holder = port(B, "10.1.0.3", pairs=("10.1.0.2",))
    base = Observed(taps=dict([_tap(A, 5, True), _tap(B, 6, True)]), bird_running=True)
    first = desired_state("h1", _view(port(A, "10.1.0.2"), holder), base)
    assert first.anycast.serving == {}  # A's endpoint route forwards it
    observed = after(first, base)
    # A's port goes: an incremental pass (only A recomputed) serves the VIP at B.
    desired = desired_state("h1", _view(holder), observed, first, {tap_name(A)})
    assert desired.touched is not None and desired.touched.ports == {A}
    assert desired.anycast.serving == {"10.1.0.2/32": [tap_name(B)]}
    rec = Recorder()
    rec.run(plan(desired, observed))
    withdraw = rec.index(EndpointsWithdraw)
    delete = rec.index(RoutesSet, lambda o: o.delete == ("10.1.0.2/32",))
    serve = rec.index(AnycastRoutesSet)
    configure = rec.index(BirdConfigure)
    assert withdraw < delete < serve < configure
    assert [(str(r.prefix), r.healthy) for r in rec.ops[configure].config.anycast_routes] == [
        ("10.1.0.2/32", 1)
    ]


def test_a_restarted_agent_on_a_correct_host_plans_and_applies_nothing() -> None:
    view = _view(port(A, "10.1.0.2"), port(B, "10.1.0.3", pairs=("10.9.0.0/24",)))
    observed = _restarted(view, dict([_tap(A, 5, True), _tap(B, 6, True)]))
    rec = Recorder()
    rec.run(plan(desired_state("h1", view, observed), observed))
    assert rec.ops == []


def test_an_incremental_pass_after_a_pass_with_no_change_plans_nothing() -> None:
    view = _view(port(A, "10.1.0.2"))
    observed = _converged(view, taps=dict([_tap(A, 5)]), bird_running=True)
    assert plan(desired_state("h1", view, observed), observed) == []


def test_drift_is_repaired_a_hand_deleted_route_element_and_rule() -> None:
    view = _view(port(A, "10.1.0.2"))
    observed = _restarted(view, dict([_tap(A, 5, True)]))
    assert observed.guard is not None
    no_route = dataclasses.replace(observed, routes={})
    assert plan(desired_state("h1", view, no_route), no_route) == [
        RoutesSet(replace=(("10.1.0.2/32", tap_name(A), 5),))
    ]
    no_element = dataclasses.replace(
        observed, guard=dataclasses.replace(observed.guard, elements={})
    )
    assert plan(desired_state("h1", view, no_element), no_element) == [
        GuardElements(add=((tap_name(A), "10.1.0.2/32"),))
    ]
    rules = {**observed.guard.rules, "prerouting": observed.guard.rules["prerouting"] - 1}
    no_rule = dataclasses.replace(observed, guard=dataclasses.replace(observed.guard, rules=rules))
    (op,) = plan(desired_state("h1", view, no_rule), no_rule)
    assert isinstance(op, GuardTable) and op.allowed == ((tap_name(A), ("10.1.0.2/32",)),)


@pytest.mark.parametrize("failing", [GuardElements, TapsPrepare])
def test_a_tap_that_could_not_be_guarded_or_prepared_gets_no_route_and_is_not_announced(
    failing: type,
) -> None:
    observed = _converged(_view(), taps=dict([_tap(A, 5)]), bird_running=True)
    desired = desired_state("h1", _view(port(A, "10.1.0.2")), observed)
    outcome = Outcome(errors=("no",), taps=frozenset({tap_name(A)}), failed=True)
    rec = Recorder(fail={failing: outcome})
    blocked = rec.run(plan(desired, observed))
    assert not any(isinstance(o, RoutesSet) for o in rec.ops)
    assert all("10.1.0.2/32" not in o.add for o in rec.ops if isinstance(o, EndpointsAnnounce))
    assert statuses(desired, blocked.taps) == {A: "DOWN"}


def test_a_route_the_kernel_refused_is_not_announced() -> None:
    observed = _converged(_view(), taps=dict([_tap(A, 5), _tap(B, 6)]), bird_running=True)
    desired = desired_state("h1", _view(port(A, "10.1.0.2"), port(B, "10.1.0.3")), observed)
    refused = Outcome(errors=("1 route change(s) failed",), prefixes=frozenset({"10.1.0.3/32"}))
    rec = Recorder(fail={RoutesSet: refused})
    blocked = rec.run(plan(desired, observed))
    (announce,) = [o for o in rec.ops if isinstance(o, EndpointsAnnounce)]
    assert announce.add == ("10.1.0.2/32",) and "10.1.0.3/32" in announce.delete
    assert statuses(desired, blocked.taps) == {A: "ACTIVE", B: "DOWN"}


def test_metrics_count_operations_changes_and_errors_per_step() -> None:
    observed = _converged(_view(), taps=dict([_tap(A, 5)]), bird_running=True)
    desired = desired_state("h1", _view(port(A, "10.1.0.2", "2001:db8::2")), observed)
    metrics = PassMetrics()

    class Failing(Recorder):
        def apply(self, op: Op) -> Outcome:
            if isinstance(op, EndpointsAnnounce):
                raise RuntimeError("bird says no")
            return super().apply(op)

    rec = Failing()
    rec.run(plan(desired, observed), metrics)
    assert metrics.steps["routes"].ops == 1 and metrics.routes_changed == 2
    assert metrics.errors == ["announce: bird says no"]
    assert metrics.to_json()["operations"] == metrics.operations == len(rec.ops) + 1


def test_unchanged_ports_are_not_converted_again() -> None:
    view = _view(port(A, "10.1.0.2"))
    observed = _converged(view, taps=dict([_tap(A, 5)]))
    first = desired_state("h1", view, observed)
    again = desired_state("h1", view, observed, previous=first)
    assert again.endpoints[A] is first.endpoints[A]
    # A reported status replaces the object, but converts to the same endpoint.
    echoed = _view({**port(A, "10.1.0.2"), "status": "ACTIVE"})
    assert desired_state("h1", echoed, observed, previous=first).endpoints[A] is first.endpoints[A]
    assert changed_ports(echoed, first) == []
    changed = _view(port(A, "10.1.0.9"))
    assert changed_ports(changed, first) == [A]
    assert desired_state("h1", changed, observed, previous=first).routes == {
        "10.1.0.9/32": tap_name(A)
    }


def test_a_bad_port_is_named_and_the_others_are_programmed() -> None:
    bad = {"id": B, "fixed_ips": [{"ip_address": "10.1.0.999"}]}
    observed = _converged(_view(), taps=dict([_tap(A, 5)]))
    desired = desired_state("h1", _view(port(A, "10.1.0.2"), bad), observed)
    assert desired.routes == {"10.1.0.2/32": tap_name(A)}
    assert any(B in e and "10.1.0.999" in e for e in desired.errors)


def test_a_restarted_agent_reads_the_announcements_and_withdraws_before_the_route_goes() -> None:
    both = _view(port(A, "10.1.0.2"), port(B, "10.1.0.3"))
    observed = _restarted(both, dict([_tap(A, 5, True), _tap(B, 6, True)]))
    assert observed.announced == {"10.1.0.2/32", "10.1.0.3/32"}
    rec = Recorder()
    rec.run(plan(desired_state("h1", _view(port(A, "10.1.0.2")), observed), observed))
    assert rec.index(EndpointsWithdraw) < rec.index(RoutesSet, lambda o: "10.1.0.3/32" in o.delete)
    assert not any(isinstance(o, BirdConfigure | BirdWithdraw) for o in rec.ops)


# Security groups -------------------------------------------------------------

WEB = "cccccccc-1111-2222-3333-444444444444"  # a group: TCP 80 in, from members of FRIENDS
FRIENDS = "dddddddd-1111-2222-3333-444444444444"


def _rule(rid: str, group: str, direction: str = "ingress", **attrs: object) -> dict:
    return {"id": rid, "security_group_id": group, "direction": direction, "ethertype": "IPv4", **attrs}  # fmt: skip


def _group(gid: str, *rules: dict) -> dict:
    return {"id": gid, "name": gid[:4], "security_group_rules": list(rules)}


WEB_RULES = (
    _rule("r1", WEB, protocol="tcp", port_range_min=80, port_range_max=80),
    _rule("r2", WEB, remote_group_id=FRIENDS),
    _rule("r3", WEB, "egress"),
)


def _member(pid: str, group: str, *addresses: str) -> dict:
    return {"id": pid, "security_groups": [group], "addresses": list(addresses)}


def _sg_view(
    *ports: dict, rules: tuple[dict, ...] = WEB_RULES, members: tuple[dict, ...] = ()
) -> HostState:
    """Ports of h1 in WEB; ``members``: ports of other hosts (FRIENDS)."""
    mine = [{**p, "security_groups": [WEB]} for p in ports]
    records = [_member(p["id"], WEB, *(ip["ip_address"] for ip in p["fixed_ips"])) for p in mine]
    return HostState(
        fabric={"asn": 65000},
        host=HOST,
        gateways={"gw": GW},
        ports={p["id"]: p for p in mine},
        security_groups={WEB: _group(WEB, *rules), FRIENDS: _group(FRIENDS)},
        members={m["id"]: m for m in (*records, *members)},
    )


def test_a_new_port_is_filtered_before_its_tap_is_routed() -> None:
    old = _sg_view(port(A, "10.1.0.2"))
    observed = _converged(old, taps=dict([_tap(A, 5, ready=True)]), bird_running=True)
    observed = dataclasses.replace(observed, taps={**observed.taps, **dict([_tap(B, 6)])})
    desired = desired_state("h1", _sg_view(port(A, "10.1.0.2"), port(B, "10.1.0.3")), observed)
    rec = Recorder()
    rec.run(plan(desired, observed))

    sg = rec.index(SecurityGroupsApply)
    route = rec.index(RoutesSet, lambda o: ("10.1.0.3/32", tap_name(B), 6) in o.replace)
    assert sg < route
    op = rec.ops[sg]
    assert isinstance(op, SecurityGroupsApply) and op.taps == {tap_name(B)}
    # Only B's map elements: the group's chains and the port chains of its
    # groups (shared with A) exist already.
    assert not op.transaction.full
    assert op.transaction.chains == ()
    assert all(tap_name(B) in line for line in op.transaction.script.splitlines())


def test_a_rule_change_is_one_small_security_group_op_and_nothing_else() -> None:
    view = _sg_view(port(A, "10.1.0.2"), port(B, "10.1.0.3"))
    observed = _converged(view, taps=dict([_tap(A, 5, True), _tap(B, 6, True)]), bird_running=True)
    ssh = _rule("r4", WEB, protocol="tcp", port_range_min=22, port_range_max=22)
    changed = _sg_view(port(A, "10.1.0.2"), port(B, "10.1.0.3"), rules=(*WEB_RULES, ssh))
    (op,) = plan(desired_state("h1", changed, observed), observed)
    assert isinstance(op, SecurityGroupsApply)
    # One group chain rewritten for both ports: never a rewrite of every port's rules.
    assert op.transaction.chains == (f"sgi-{WEB}",)
    assert "tcp dport 22 accept" in op.transaction.script
    assert op.taps == frozenset()
    # A rule added admits more: no conntrack pruning (it lists every flow).
    assert not op.transaction.narrowed
    # Removing it may admit less: flows only it allowed are pruned.
    now = after(desired_state("h1", changed, observed), observed)
    (back,) = plan(desired_state("h1", view, now), now)
    assert isinstance(back, SecurityGroupsApply) and back.transaction.narrowed
    # A full pass read the table from the kernel: not known in detail, so prune.
    read = dataclasses.replace(observed, sg_applied=None)
    (op,) = plan(desired_state("h1", changed, read), read)
    assert isinstance(op, SecurityGroupsApply) and op.transaction.narrowed


def test_a_member_added_on_another_host_is_one_set_element() -> None:
    view = _sg_view(port(A, "10.1.0.2"))
    observed = _converged(view, taps=dict([_tap(A, 5, True)]), bird_running=True)
    friend = _member("eeeeeeee-1111-2222-3333-444444444444", FRIENDS, "10.2.0.7")
    (op,) = plan(desired_state("h1", _sg_view(port(A, "10.1.0.2"), members=(friend,)), observed), observed)  # fmt: skip
    assert isinstance(op, SecurityGroupsApply)
    assert (
        op.transaction.script == f"add element inet l3fabric-sg rg4-{FRIENDS} {{ 10.2.0.7/32 }}\n"
    )
    assert not op.transaction.narrowed  # admits more: no conntrack pruning


def test_a_restarted_agent_with_groups_in_place_changes_nothing() -> None:
    view = _sg_view(port(A, "10.1.0.2"), port(B, "10.1.0.3", pairs=("10.9.0.0/24",)))
    observed = _restarted(view, dict([_tap(A, 5, True), _tap(B, 6, True)]))
    assert observed.security_groups is not None
    rec = Recorder()
    rec.run(plan(desired_state("h1", view, observed), observed))
    assert rec.ops == []
    # No table (a new host, or one deleted by hand): the whole table in one op.
    bare = dataclasses.replace(observed, security_groups=None)
    (op,) = plan(desired_state("h1", view, bare), bare)
    assert isinstance(op, SecurityGroupsApply) and op.transaction.full


def test_a_port_whose_filter_failed_is_not_routed() -> None:
    observed = _converged(_sg_view(), taps=dict([_tap(A, 5)]), bird_running=True)
    desired = desired_state("h1", _sg_view(port(A, "10.1.0.2")), observed)
    failed = Outcome(errors=("nft: no",), failed=True)
    rec = Recorder(fail={SecurityGroupsApply: failed})
    blocked = rec.run(plan(desired, observed))
    assert not any(isinstance(o, RoutesSet) for o in rec.ops)
    assert statuses(desired, blocked.taps) == {A: "DOWN"}


def test_port_security_off_maps_the_tap_to_accept_and_guards_no_source() -> None:
    off = {**port(A, "10.1.0.2"), "port_security_enabled": False}
    observed = _converged(_view(), taps=dict([_tap(A, 5)]), bird_running=True)
    desired = desired_state("h1", _view(off), observed)
    rec = Recorder()
    rec.run(plan(desired, observed))
    op = rec.ops[rec.index(SecurityGroupsApply)]
    assert f'"{tap_name(A)}" : accept' in op.transaction.script
    guard = rec.ops[rec.index(GuardElements)]
    assert set(guard.add) == {(tap_name(A), "0.0.0.0/0"), (tap_name(A), "::/0")}
