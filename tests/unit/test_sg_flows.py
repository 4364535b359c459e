"""Security groups: which tracked flows the rules still allow (dataplane/sg_flows.py)."""

from __future__ import annotations

import pytest

from l3fabric.dataplane.sg_flows import Flow, allows, delete_args, parse_conntrack, stale_flows
from l3fabric.dataplane.sg_model import SecurityGroup, SgPort, SgRule, SgState

G = "11111111-0000-4000-8000-000000000001"
A = SgPort("tapa", (G,), True, ("10.0.0.1/32", "fd00::1/128"))
OFF = SgPort("tapo", (), False, ("10.0.0.9/32",))


def _state(*rules: SgRule, members=("10.5.0.0/16",)) -> SgState:
    return SgState({G: SecurityGroup(G, rules)}, {"tapa": A, "tapo": OFF}, {G: members})


TCP80 = Flow(4, 6, "10.5.1.1", "10.0.0.1", 40000, 80)


@pytest.mark.parametrize(
    ("rule", "flow", "allowed"),
    [
        (SgRule("ingress", "IPv4"), TCP80, True),
        (SgRule("ingress", "IPv6"), TCP80, False),
        (SgRule("egress", "IPv4"), TCP80, False),
        (SgRule("ingress", "IPv4", 6, 80, 80), TCP80, True),
        (SgRule("ingress", "IPv4", 6, 81, 90), TCP80, False),
        (SgRule("ingress", "IPv4", 17, 80, 80), TCP80, False),
        (SgRule("ingress", "IPv4", remote_prefix="10.5.1.0/24"), TCP80, True),
        (SgRule("ingress", "IPv4", remote_prefix="10.6.0.0/24"), TCP80, False),
        (SgRule("ingress", "IPv4", remote_group=G), TCP80, True),
        (SgRule("ingress", "IPv4", remote_group="other"), TCP80, False),
        (
            SgRule("ingress", "IPv4", 1, 8, None),
            Flow(4, 1, "1.1.1.1", "10.0.0.1", 7, None, 8, 0),
            True,
        ),
        (
            SgRule("ingress", "IPv4", 1, 8, 1),
            Flow(4, 1, "1.1.1.1", "10.0.0.1", 7, None, 8, 0),
            False,
        ),
        (SgRule("ingress", "IPv4", 1), Flow(4, 1, "1.1.1.1", "10.0.0.1", 7, None, 13, 0), True),
    ],
)
def test_ingress_rule_matching(rule: SgRule, flow: Flow, allowed: bool) -> None:
    assert allows(_state(rule), A, "ingress", flow) is allowed


def test_neighbour_discovery_and_port_security_off_always_pass() -> None:
    nd = Flow(6, 58, "fe80::2", "fd00::1", None, None, 135, 0)
    assert allows(_state(), A, "ingress", nd)
    assert allows(_state(), OFF, "ingress", TCP80)
    assert not allows(_state(), None, "ingress", TCP80)  # an unknown tap is dropped


def test_stale_flows_judge_both_ends_and_skip_the_host() -> None:
    state = _state(SgRule("ingress", "IPv4", 6, 80, 80), SgRule("egress", "IPv4", remote_group=G))
    out_ok = Flow(4, 6, "10.0.0.1", "10.5.0.7", 5000, 443)  # egress to a member
    out_bad = Flow(4, 6, "10.0.0.1", "8.8.8.8", 5000, 443)
    in_bad = Flow(4, 6, "10.5.1.1", "10.0.0.1", 5000, 22)
    from_host = Flow(4, 6, "192.0.2.1", "10.0.0.1", 5000, 22)  # the host's own probe
    to_off = Flow(4, 6, "10.5.1.1", "10.0.0.9", 5000, 22)
    elsewhere = Flow(4, 6, "10.5.1.1", "10.5.1.2", 5000, 22)
    flows = [TCP80, out_ok, out_bad, in_bad, from_host, to_off, elsewhere]
    assert stale_flows(state, flows, ["192.0.2.1"]) == [out_bad, in_bad]
    # A VM-to-VM flow on one host needs the sender's egress and the receiver's ingress.
    local = Flow(4, 6, "10.0.0.9", "10.0.0.1", 5000, 22)
    assert stale_flows(state, [local]) == [local]


def test_parse_conntrack_extended() -> None:
    text = (
        "ipv4     2 tcp      6 431999 ESTABLISHED src=10.5.1.1 dst=10.0.0.1 sport=40000 dport=80"
        " src=10.0.0.1 dst=10.5.1.1 sport=80 dport=40000 [ASSURED] mark=0 use=1\n"
        "ipv4     2 icmp     1 29 src=10.5.1.1 dst=10.0.0.1 type=8 code=0 id=77"
        " src=10.0.0.1 dst=10.5.1.1 type=0 code=0 id=77 mark=0 use=1\n"
        "ipv6     10 icmpv6   58 29 src=fd00::5 dst=fd00::1 type=128 code=0 id=3"
        " src=fd00::1 dst=fd00::5 type=129 code=0 id=3 mark=0 use=1\n"
        "conntrack v1.4.7 (conntrack-tools): 3 flow entries have been shown.\n"
    )
    tcp, icmp, icmp6 = parse_conntrack(text)
    assert tcp == TCP80
    assert icmp == Flow(4, 1, "10.5.1.1", "10.0.0.1", 77, None, 8, 0)
    assert icmp6 == Flow(6, 58, "fd00::5", "fd00::1", 3, None, 128, 0)
    assert delete_args(tcp) == [
        "-D", "-f", "ipv4", "-p", "tcp", "-s", "10.5.1.1", "-d", "10.0.0.1",
        "--sport", "40000", "--dport", "80",
    ]  # fmt: skip
    assert delete_args(icmp6)[4:] == [
        "icmpv6", "-s", "fd00::5", "-d", "fd00::1",
        "--icmpv6-type", "128", "--icmpv6-code", "0", "--icmpv6-id", "3",
    ]  # fmt: skip
