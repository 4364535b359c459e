"""Security group rules are checked as Neutron checks them: the error type a
client matches on, the canonical IPv6 ICMP protocol, and what counts as the
same rule."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.api_helpers import error, make


def _post(client, group_id: str, **attrs: Any):
    body = {"security_group_rule": {"security_group_id": group_id, "direction": "ingress", **attrs}}
    return client.post("/v2.0/security-group-rules", json=body)


@pytest.fixture
def group(client) -> dict[str, Any]:
    return make(client, "security-groups", "security_group", name="web")


@pytest.mark.parametrize(
    ("attrs", "status", "kind"),
    [
        ({"port_range_min": 80, "port_range_max": 80}, 400, "SecurityGroupProtocolRequiredWithPorts"),
        ({"protocol": "tcp", "port_range_min": 0, "port_range_max": 80}, 400,
         "SecurityGroupInvalidPortValue"),
        ({"protocol": "udp", "port_range_min": 90, "port_range_max": 80}, 400,
         "SecurityGroupInvalidPortRange"),
        ({"protocol": "icmp", "port_range_min": 256}, 400, "SecurityGroupInvalidIcmpValue"),
        ({"protocol": "icmp", "port_range_max": 0}, 400, "SecurityGroupMissingIcmpType"),
        ({"protocol": "gre", "port_range_min": 1, "port_range_max": 2}, 400,
         "SecurityGroupInvalidProtocolForPort"),
        ({"protocol": "banana"}, 400, "SecurityGroupRuleInvalidProtocol"),
        ({"protocol": "icmpv6"}, 400, "SecurityGroupEthertypeConflictWithProtocol"),
        ({"protocol": "58"}, 400, "SecurityGroupEthertypeConflictWithProtocol"),
        ({"ethertype": "IPv6", "remote_ip_prefix": "10.0.0.0/8"}, 400,
         "SecurityGroupRuleParameterConflict"),
        ({"remote_group_id": "no-such-group"}, 404, "SecurityGroupNotFound"),
    ],
)  # fmt: skip
def test_a_bad_rule_is_refused_with_neutrons_error_type(
    client, group, attrs: dict[str, Any], status: int, kind: str
) -> None:
    assert error(_post(client, group["id"], **attrs), status) == kind
    stored = client.get(f"/v2.0/security-groups/{group['id']}").json()["security_group"]
    assert len(stored["security_group_rules"]) == 2  # only the two egress rules


def test_both_remotes_at_once_are_refused(client, group) -> None:
    r = _post(client, group["id"], remote_ip_prefix="10.0.0.0/8", remote_group_id=group["id"])
    assert error(r, 400) == "SecurityGroupRemoteGroupAndRemoteIpPrefix"


@pytest.mark.parametrize(("given", "stored"), [("icmp", "ipv6-icmp"), ("icmpv6", "ipv6-icmp"),
                                               ("1", "58")])  # fmt: skip
def test_icmp_for_ipv6_is_stored_as_icmpv6(client, group, given: str, stored: str) -> None:
    r = _post(client, group["id"], ethertype="IPv6", protocol=given, port_range_min=128)
    assert r.status_code == 201, r.text
    assert r.json()["security_group_rule"]["protocol"] == stored


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"protocol": "tcp"}, {"protocol": "6"}),
        ({"protocol": "udp", "remote_ip_prefix": "0.0.0.0/0"}, {"protocol": "UDP"}),
        ({"ethertype": "IPv6", "protocol": "icmp"}, {"ethertype": "IPv6", "protocol": "58"}),
    ],
)
def test_the_same_rule_in_other_words_is_a_duplicate(client, group, first, second) -> None:
    assert _post(client, group["id"], **first).status_code == 201
    assert error(_post(client, group["id"], **second), 409) == "SecurityGroupRuleExists"


def test_a_rule_may_name_its_own_group_or_another_as_remote(client, group) -> None:
    other = make(client, "security-groups", "security_group", name="db")
    for remote in (group["id"], other["id"]):
        r = _post(client, group["id"], protocol="tcp", port_range_min=5432, port_range_max=5432,
                  remote_group_id=remote)  # fmt: skip
        assert r.status_code == 201, r.text
