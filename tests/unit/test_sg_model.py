"""Security groups: the model built from Neutron-shaped dicts (dataplane/sg_model.py)."""

from __future__ import annotations

import pytest

from l3fabric.dataplane.sg_model import SgRule, build_state, memberships, rule_of

G1 = "11111111-0000-4000-8000-000000000001"
G2 = "11111111-0000-4000-8000-000000000002"
P1 = "aaaaaaaa-0000-4000-8000-000000000001"
P2 = "bbbbbbbb-0000-4000-8000-000000000002"


def test_rule_normalised() -> None:
    assert rule_of(
        {
            "direction": "ingress",
            "protocol": "TCP",
            "port_range_min": 22,
            "remote_ip_prefix": "10.1.2.3/8",
        }
    ) == SgRule("ingress", "IPv4", 6, 22, 22, "10.0.0.0/8")
    # "icmp" on IPv6 is ICMPv6; type and code come from the port range.
    assert rule_of(
        {"direction": "egress", "ethertype": "IPv6", "protocol": "icmp", "port_range_min": 128}
    ) == SgRule("egress", "IPv6", 58, 128, None)
    # 0.0.0.0/0 is anywhere; a protocol may be a number as text.
    assert rule_of({"direction": "ingress", "protocol": "47", "remote_ip_prefix": "0.0.0.0/0"}) == (
        SgRule("ingress", "IPv4", 47)
    )


@pytest.mark.parametrize(
    ("rule", "why"),
    [
        ({"direction": "sideways"}, "direction"),
        ({"direction": "ingress", "protocol": "bogus"}, "protocol 'bogus'"),
        ({"direction": "ingress", "protocol": 300}, "protocol 300"),
        ({"direction": "ingress", "protocol": "gre", "port_range_min": 1}, "has no ports"),
        ({"direction": "ingress", "port_range_min": 80}, "has no ports"),
        (
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 90, "port_range_max": 80},
            "above",
        ),
        ({"direction": "ingress", "protocol": "icmp", "port_range_max": 0}, "needs a type"),
        ({"direction": "ingress", "remote_ip_prefix": "fd00::/8"}, "is not IPv4"),
        (
            {"direction": "ingress", "remote_ip_prefix": "10.0.0.0/8", "remote_group_id": G1},
            "exclude",
        ),
        ({"direction": "ingress", "remote_address_group_id": G1}, "not supported"),
    ],
)
def test_bad_rule_says_why(rule: dict, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        rule_of(rule)


def _port(pid: str, groups: list[str], ips: list[str], pairs=(), **extra) -> dict:
    return {
        "id": pid,
        "security_groups": groups,
        "fixed_ips": [{"ip_address": a} for a in ips],
        "allowed_address_pairs": [{"ip_address": a} for a in pairs],
        **extra,
    }


def test_memberships_take_fixed_ips_and_pairs_merged() -> None:
    ports = [
        _port(P1, [G1], ["10.0.0.5"], pairs=["10.0.0.0/24", "fd00::/64"]),
        _port(P2, [G1, G2], ["10.1.0.1", "fd00::1"]),
        _port(P2, [G2], ["10.2.0.1"], port_security_enabled=False),
    ]
    assert memberships(ports) == {
        G1: ("10.0.0.0/24", "10.1.0.1/32", "fd00::/64"),
        G2: ("10.1.0.1/32", "fd00::1/128"),
    }


def test_bad_rule_skipped_and_reported_others_kept() -> None:
    groups = [
        {
            "id": G1,
            "security_group_rules": [
                {"id": "ok", "direction": "ingress", "remote_group_id": G2},
                {"id": "bad", "direction": "ingress", "protocol": "nope"},
            ],
        }
    ]
    ports = [
        _port(P1, [G1, "missing"], ["10.0.0.1"]),
        _port(P2, [G1], ["10.0.0.2"], port_security_enabled=False),
        {"id": "not-a-uuid"},
    ]
    state = build_state(groups, ports, {G2: ["10.9.0.1/32"]})
    assert state.groups[G1].rules == (SgRule("ingress", "IPv4", remote_group=G2),)
    assert state.groups["missing"].rules == ()
    assert state.members == {G2: ("10.9.0.1/32",)}
    tap1, tap2 = "tapaaaaaaaa-00", "tapbbbbbbbb-00"
    assert state.ports[tap1].groups == (G1, "missing")
    assert not state.ports[tap2].port_security and state.ports[tap2].groups == ()
    assert len(state.ports) == 2
    assert [e.split(":")[0] for e in state.errors] == [
        "port 'not-a-uuid'",
        f"security group {G1} rule bad",
        "security group missing",
    ]


def test_rules_given_apart_from_their_group() -> None:
    rules = [{"id": "r", "security_group_id": G1, "direction": "egress"}]
    state = build_state([{"id": G1}], [_port(P1, [G1], ["10.0.0.1"])], {}, rules=rules)
    assert state.groups[G1].rules == (SgRule("egress", "IPv4"),)
