"""The gateway agent's pass as plain data: desired state, the ordered plan, and its execution.

The appliers are recording fakes (the real ones wrap nft, the kernel's
nexthop groups and BIRD); the order rules are asserted on what they record.
"""

from __future__ import annotations

import dataclasses
import json

from l3fabric.agent.execute import PassMetrics
from l3fabric.agent.ops import BirdConfigure, BirdWithdraw, Outcome, SysctlSet
from l3fabric.agent.passlog import summary
from l3fabric.client import HostState
from l3fabric.gateway.nat import expected_listing
from l3fabric.gateway.observed import GatewayObserved
from l3fabric.gateway.ops import AnycastGroupsSet, GatewayBirdConfigure, NatTableSet
from l3fabric.gateway.plan import FORWARDING, DesiredGateway, desired_state, plan
from l3fabric.routing.anycast_routes import LearnedPath, NextHop
from l3fabric.routing.bird_config import render

from .recording import Recorder
from .test_gateway_policy import GATEWAY, NETWORKS

SUBNETS = {
    "s1": {"id": "s1", "network_id": "pub", "cidr": "203.0.113.0/25"},
    "s4": {"id": "s4", "network_id": "priv", "cidr": "10.1.0.0/24"},
}
EGRESS = {"192.0.2.0": frozenset({"l3f-up"})}
ANYCAST = "10.1.0.100/32"


def view(**subnets: dict) -> HostState:
    hosts = {"h1": {"name": "h1", "router_id": "172.17.0.5", "address": "172.16.0.1", "asn": None}}
    return HostState(
        fabric={"asn": 65000, "peering": "gateway"},
        gateways={"gw1": GATEWAY},
        hosts=hosts,
        networks=NETWORKS,
        subnets={**SUBNETS, **subnets},
    )


def learned(*hosts: tuple[str, int]) -> dict[str, list[LearnedPath]]:
    """BIRD's paths for ANYCAST: one per (next hop, healthy members)."""
    paths = [LearnedPath(f"peer_{i}", n, [NextHop(hop, "l3f-f0", 1)]) for i, (hop, n) in enumerate(hosts)]  # fmt: skip
    return {ANYCAST: paths}


def converged(state: HostState, **observed: object) -> GatewayObserved:
    """A gateway left right for ``state`` by an earlier pass (of this agent, or a restarted one)."""
    base = GatewayObserved(egress=EGRESS, bird_running=True, **observed)  # type: ignore[arg-type]
    desired = desired_state("gw1", state, base)
    assert desired.nat is not None and desired.bird is not None and not desired.errors
    return dataclasses.replace(
        base,
        sysctls=dict(FORWARDING),
        nat=expected_listing(desired.nat),
        anycast={p: frozenset(m) for p, m in (desired.anycast or {}).items()},
        bird_text=render(desired.bird),
        bird_policy=desired.policy,
    )


def test_a_restarted_agent_on_a_right_gateway_plans_nothing() -> None:
    state = view()
    observed = converged(state, learned=learned(("172.16.0.1", 2)))
    # A restart: nothing remembered, everything read back from the kernel and BIRD.
    observed = dataclasses.replace(observed, bird_policy=None)
    assert plan(desired_state("gw1", state, observed), observed) == []


def announced(config: object) -> set[str]:
    """The aggregates a BIRD config originates (and exports upstream), defaults left out."""
    return {str(r.prefix) for r in config.static_routes if r.prefix.prefixlen}  # type: ignore[attr-defined]


def test_a_new_public_subnet_is_announced_after_the_nat_table_is_in_place() -> None:
    # The first pass of a new gateway: no table yet, BIRD not running.
    observed = GatewayObserved(egress=EGRESS)
    state = view(s2={"id": "s2", "network_id": "pub", "cidr": "198.51.100.0/24"})
    desired = desired_state("gw1", state, observed)
    rec, metrics = Recorder(), PassMetrics()
    rec.run(plan(desired, observed), metrics)

    nat = rec.index(NatTableSet)
    announce = rec.index(GatewayBirdConfigure)
    assert rec.index(SysctlSet) < nat < announce
    assert "198.51.100.0/24" in announced(rec.ops[announce].config)
    assert not any(isinstance(o, BirdWithdraw) for o in rec.ops)  # nothing goes
    assert (metrics.steps["nat"].ops, metrics.steps["announce"].ops) == (1, 1)
    assert metrics.errors == []


def test_a_new_public_subnet_on_a_settled_gateway_only_reconfigures_bird() -> None:
    observed = converged(view())
    state = view(s2={"id": "s2", "network_id": "pub", "cidr": "198.51.100.0/24"})
    (op,) = plan(desired_state("gw1", state, observed), observed)
    assert isinstance(op, GatewayBirdConfigure)
    assert announced(op.config) == {"203.0.113.0/25", "198.51.100.0/24"}


def test_bird_is_not_given_a_new_subnet_while_the_nat_table_failed() -> None:
    observed = converged(view())
    state = view(s5={"id": "s5", "network_id": "priv", "cidr": "10.2.0.0/24"})
    rec, metrics = (
        Recorder(fail={NatTableSet: Outcome(errors=("nat: refused",), failed=True)}),
        PassMetrics(),
    )
    rec.run(plan(desired_state("gw1", state, observed), observed), metrics)

    assert [type(o) for o in rec.ops] == [NatTableSet]  # no import of an unshielded range
    assert metrics.errors == ["nat: refused"]
    assert summary(metrics)["errors"] == ["nat: refused"]


def test_a_subnet_made_private_is_withdrawn_upstream_before_the_table_changes() -> None:
    observed = converged(view())
    private = {**NETWORKS, "pub": {"id": "pub"}}
    state = dataclasses.replace(view(), networks=private)
    rec = Recorder()
    rec.run(plan(desired_state("gw1", state, observed), observed))

    withdraw = rec.index(BirdWithdraw)
    assert announced(rec.ops[withdraw].config) == set()
    assert withdraw < rec.index(NatTableSet)
    # The lowered config is the final one: BIRD is configured once.
    assert sum(isinstance(o, BirdConfigure) for o in rec.ops) == 1


def test_a_public_aggregate_that_grows_is_never_withdrawn_on_the_way() -> None:
    observed = converged(view())
    state = view(s2={"id": "s2", "network_id": "pub", "cidr": "203.0.113.128/25"})
    ops = plan(desired_state("gw1", state, observed), observed)
    # 203.0.113.0/25 becomes part of 203.0.113.0/24: announced throughout.
    assert not any(isinstance(o, BirdWithdraw) for o in ops)
    assert announced(ops[-1].config) == {"203.0.113.0/24"}  # type: ignore[attr-defined]


def test_an_anycast_next_hop_leaving_shrinks_the_group_in_place() -> None:
    two = learned(("172.16.0.1", 2), ("172.16.0.3", 1))
    observed = converged(view(), learned=two)
    # Host 172.16.0.3's member goes: BIRD has one path left.
    observed = dataclasses.replace(observed, learned=learned(("172.16.0.1", 2)))
    ops = plan(desired_state("gw1", view(), observed), observed)

    # One op: the group keeps its prefix and the member that stays (an
    # in-place edit for ResilientRoutes), nothing else is touched.
    assert ops == [AnycastGroupsSet(groups=((ANYCAST, (("172.16.0.1", "l3f-f0", 2),)),))]


def test_a_hand_deleted_anycast_group_or_nat_rule_is_planned_back() -> None:
    observed = converged(view(), learned=learned(("172.16.0.1", 1)))
    assert observed.nat is not None
    drifted = dataclasses.replace(
        observed,
        anycast={},
        nat=dataclasses.replace(observed.nat, rules={"forward": 2, "postrouting": 2}),
    )
    ops = plan(desired_state("gw1", view(), drifted), drifted)
    assert [type(o) for o in ops] == [NatTableSet, AnycastGroupsSet]


def test_bird_not_answering_leaves_the_anycast_groups_alone() -> None:
    observed = converged(view(), learned=learned(("172.16.0.1", 1)))
    silent = dataclasses.replace(observed, learned=None)
    desired = desired_state("gw1", view(), silent)
    assert desired.anycast is None
    assert plan(desired, silent) == []


def test_an_unregistered_gateway_changes_nothing_but_its_anycast_groups() -> None:
    state = dataclasses.replace(view(), gateways={})
    observed = GatewayObserved(learned=learned(("172.16.0.1", 1)))
    desired = desired_state("gw1", state, observed)
    assert desired == DesiredGateway(sysctls={}, anycast={ANYCAST: [("172.16.0.1", "l3f-f0", 1)]})
    assert [type(o) for o in plan(desired, observed)] == [AnycastGroupsSet]


def test_forwarding_sysctls_come_first() -> None:
    observed = dataclasses.replace(converged(view()), sysctls={}, nat=None)
    ops = plan(desired_state("gw1", view(), observed), observed)
    assert [type(o) for o in ops] == [SysctlSet, NatTableSet]


def test_the_heartbeat_summary_of_a_failing_pass_stays_small() -> None:
    metrics = PassMetrics(number=7)
    metrics.step("nat").errors += [f"nat: {'x' * 5000} {i}" for i in range(1000)]
    small = summary(metrics)
    assert small["error_count"] == 1000 and len(small["errors"]) == 5
    assert len(json.dumps(small)) < 4096  # the heartbeat's free-form fields: 16 KiB
