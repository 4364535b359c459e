"""DHCP in the host agent's pass: part of the pure desired state, applied by ops in plan order.

Recorded with the fake applier (tests/unit/recording.py): a new port's hosts
line is in place before its guard, tap and route (a VM may ask as soon as
its tap is up), one file and no reload; a deleted port's line goes with a
reload; a restarted agent on a correct host changes nothing.
"""

from __future__ import annotations

import dataclasses

from l3fabric.agent import plan as plan_module
from l3fabric.agent.dhcp_config import ServedDhcp, hosts_text
from l3fabric.agent.execute import PassMetrics
from l3fabric.agent.observed import Observed
from l3fabric.agent.ops import (
    DhcpHostsAdd,
    DhcpInterface,
    DhcpServe,
    DhcpStop,
    EndpointsAnnounce,
    GuardElements,
    GuardTable,
    RoutesSet,
    TapsPrepare,
)
from l3fabric.agent.plan import after, desired_state, plan
from l3fabric.client import HostState
from l3fabric.dataplane.links import tap_name

from .agent_ports import A, B
from .recording import Recorder
from .test_agent_plan import _restarted, _tap, _view
from .test_dhcp_config import NETWORKS, S4, S6, port, subnets

SUBNETS = subnets()


def _dhcp_view(*ports: dict) -> HostState:
    """``ports`` on h1 with the DHCP-enabled subnets (the same objects in every view, as the
    watch keeps them)."""
    return dataclasses.replace(_view(*ports), subnets=SUBNETS, networks=NETWORKS)


def _served(view: HostState, observed: Observed) -> Observed:
    """``observed`` after a first pass for ``view`` (dnsmasq started, as it then serves)."""
    start = dataclasses.replace(observed, dhcp=ServedDhcp())
    return after(desired_state("h1", view, start), start)


def _port(n: int) -> dict:
    return {**port(n), "id": (A, B)[n - 5] if n in (5, 6) else port(n)["id"]}


def test_a_first_pass_starts_dnsmasq_before_any_guard_tap_or_route() -> None:
    view = _dhcp_view(_port(5))
    observed = Observed(taps=dict([_tap(A, 5)]), bird_running=True, dhcp=ServedDhcp())
    rec = Recorder()
    rec.run(plan(desired_state("h1", view, observed), observed))
    serve = rec.index(DhcpServe)
    assert rec.index(DhcpInterface) < serve < rec.index(GuardTable) < rec.index(TapsPrepare)
    op = rec.ops[serve]
    assert isinstance(op, DhcpServe) and op.restart and list(op.lines) == [A]
    assert f"dhcp-range=set:s{S4.replace('-', '')}" in op.main


def test_a_new_ports_line_is_one_file_before_its_guard_tap_and_route_no_reload() -> None:
    old = _dhcp_view(_port(5))
    observed = _served(old, Observed(taps=dict([_tap(A, 5, True)]), bird_running=True))
    observed = dataclasses.replace(observed, taps={**observed.taps, **dict([_tap(B, 6)])})
    new = _dhcp_view(_port(5), _port(6))
    last = desired_state("h1", old, dataclasses.replace(observed, dhcp=ServedDhcp()))
    # An incremental pass, as the agent runs it: from the last state, B's tap re-read.
    desired = desired_state("h1", new, observed, last, taps=[tap_name(B)], hint=[B])
    assert desired.dhcp is not None and desired.dhcp.touched == {B}
    rec = Recorder()
    metrics = PassMetrics()
    rec.run(plan(desired, observed), metrics)
    added = rec.index(DhcpHostsAdd)
    (entry,) = rec.ops[added].entries  # type: ignore[attr-defined]
    assert entry[0] == B and ",10.1.0.6," in entry[1]
    guard = rec.index(GuardElements, lambda o: any(t == tap_name(B) for t, _ in o.add))
    assert added < guard < rec.index(TapsPrepare) < rec.index(RoutesSet)
    assert rec.index(RoutesSet) < rec.index(EndpointsAnnounce)
    assert not any(isinstance(o, (DhcpServe, DhcpInterface)) for o in rec.ops)  # no reload
    assert metrics.steps["dhcp"].ops == 1 and metrics.steps["dhcp"].changes == 1


def test_a_deleted_ports_line_goes_with_a_reload_not_a_restart() -> None:
    both = _dhcp_view(_port(5), _port(6))
    taps = dict([_tap(A, 5, True), _tap(B, 6, True)])
    observed = _served(both, Observed(taps=taps, bird_running=True))
    rec = Recorder()
    rec.run(plan(desired_state("h1", _dhcp_view(_port(5)), observed), observed))
    (serve,) = [o for o in rec.ops if isinstance(o, DhcpServe)]
    assert list(serve.lines) == [A] and not serve.restart
    assert rec.ops[0] is serve  # before the route and guard changes
    rec = Recorder()
    rec.run(plan(desired_state("h1", _dhcp_view(), observed), observed))
    assert [o for o in rec.ops if o.domain == "dhcp"] == [DhcpStop()]  # no port left: no dnsmasq


def test_a_restarted_agent_finding_dnsmasq_serving_changes_nothing(monkeypatch) -> None:
    view = _dhcp_view(_port(5), _port(6))
    taps = dict([_tap(A, 5, True, ipv6=True), _tap(B, 6, True, ipv6=True)])  # dual-stack ports
    observed = _restarted(view, taps)
    desired = desired_state("h1", view, dataclasses.replace(observed, dhcp=ServedDhcp()))
    assert desired.dhcp is not None
    # As observe() reads it from the files, the pid and l3f-dhcp:
    read = ServedDhcp(
        running=True,
        main=desired.dhcp.main,
        opts=desired.dhcp.opts,
        addresses=tuple(sorted(desired.dhcp.addresses)),
        hosts=hosts_text(desired.dhcp.lines),
    )
    observed = dataclasses.replace(observed, dhcp=read)
    rec = Recorder()
    rec.run(plan(desired_state("h1", view, observed), observed))
    assert rec.ops == []
    # B added since the last rewrite: its line in the hosts directory is served as it is ...
    in_dir = {B: desired.dhcp.lines[B]}
    only_a = hosts_text({A: desired.dhcp.lines[A]})
    read_dir = dataclasses.replace(read, hosts=only_a, pending=in_dir)
    pending = dataclasses.replace(observed, dhcp=read_dir)
    assert plan(desired_state("h1", view, pending), pending) == []
    # ... until the directory holds FOLD_AT lines: then a full pass folds them in (a reload).
    monkeypatch.setattr(plan_module, "FOLD_AT", 1)
    ops = plan(desired_state("h1", view, pending), pending)
    assert [type(o) for o in ops] == [DhcpServe] and not ops[0].restart  # type: ignore[attr-defined]
    # An address deleted from l3f-dhcp by hand comes back, without a reload.
    drift = dataclasses.replace(observed, dhcp=dataclasses.replace(read, addresses=("169.254.1.1/32",)))  # fmt: skip
    assert [type(o) for o in plan(desired_state("h1", view, drift), drift)] == [DhcpInterface]


def test_an_incremental_dhcp_state_equals_the_full_one_and_is_pure() -> None:
    view = _dhcp_view(*(port(n) for n in range(1, 30)))
    observed = _served(view, Observed(bird_running=True))
    last = desired_state("h1", view, dataclasses.replace(observed, dhcp=ServedDhcp()))
    moved = port(7, fixed_ips=[{"subnet_id": S4, "ip_address": "10.1.0.77"}])
    only6 = port(8, fixed_ips=[{"subnet_id": S6, "ip_address": "2001:db8:1::8"}])
    ports = {k: v for k, v in view.ports.items() if k != port(9)["id"]}
    changed = dataclasses.replace(view, ports={**ports, moved["id"]: moved, only6["id"]: only6})
    hint = [moved["id"], only6["id"], port(9)["id"]]
    first = desired_state("h1", changed, observed, last, taps=[], hint=hint)
    desired_state("h1", view, observed)  # another call in between keeps nothing
    again = desired_state("h1", changed, observed, last, taps=[], hint=hint)
    fresh = desired_state("h1", changed, dataclasses.replace(observed, dhcp=ServedDhcp()))
    assert first.dhcp is not None and fresh.dhcp is not None and again.dhcp is not None
    assert first.dhcp.touched == set(hint) and fresh.dhcp.touched is None
    for got in (first.dhcp, again.dhcp):
        assert dict(got.lines) == dict(fresh.dhcp.lines)
        assert (got.main, got.opts, got.addresses, got.errors) == (
            fresh.dhcp.main, fresh.dhcp.opts, fresh.dhcp.addresses, fresh.dhcp.errors,
        )  # fmt: skip
    (serve,) = [o for o in plan(first, observed) if isinstance(o, DhcpServe)]
    assert ",10.1.0.77," in hosts_text(serve.lines) and port(9)["id"] not in serve.lines
