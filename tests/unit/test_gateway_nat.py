"""The gateway's NAT table rendering: who is NATed, what is shielded, digest stability."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from l3fabric.dataplane.nft import digest_of
from l3fabric.gateway.nat import conntrack_stats, policy, render, snat_flows


def nets(*prefixes: str) -> list:
    return [ip_network(p) for p in prefixes]


def test_private_sources_leaving_upstream_are_snated_to_the_registered_address() -> None:
    text = render(policy(nets("10.1.0.0/24", "fd00:1::/64"), ["l3f-u0"], ip_address("192.0.2.1")))
    assert 'elements = { "l3f-u0" }' in text
    assert "elements = { 10.1.0.0/24 }" in text
    assert "oifname @upstream ip saddr @private4 counter snat ip to 192.0.2.1" in text
    # No IPv6 SNAT address registered: masquerade.
    assert "oifname @upstream ip6 saddr @private6 counter masquerade" in text


def test_inbound_to_private_is_dropped_after_conntrack_accepts_replies() -> None:
    text = render(policy(nets("10.1.0.0/24"), ["l3f-u0"], None))
    forward = text.split("chain forward {")[1]
    established = forward.index("ct state established,related accept")
    assert established < forward.index("iifname @upstream ip daddr @private4 counter drop")
    assert "masquerade" in text


def test_public_ranges_are_not_in_the_table() -> None:
    text = render(policy(nets("10.1.0.0/24"), ["l3f-u0"], None))
    assert "203.0.113" not in text


def test_digest_follows_content_only() -> None:
    a = render(policy(nets("10.1.0.0/24"), ["l3f-u0"], None))
    assert digest_of(a) == digest_of(render(policy(nets("10.1.0.0/24"), ["l3f-u0"], None)))
    assert digest_of(a) != digest_of(
        render(policy(nets("10.1.0.0/24", "10.2.0.0/24"), ["l3f-u0"], None))
    )


@pytest.mark.parametrize(
    ("private", "ifaces", "snat"),
    [
        (["10.1.0.0/24"], [], None),  # text, not a network
        ([], ["bad name"], None),
        ([], [], "192.0.2.1"),  # text, not an address
        ([], [], ip_address("fe80::1%lo")),  # a zone ID
        ([ip_network("fe80::%x/64")], [], None),
    ],
)
def test_bad_input_is_refused(private: list, ifaces: list[str], snat: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        policy(private, ifaces, snat)  # type: ignore[arg-type]


def test_only_translated_conntrack_entries_count_as_snat() -> None:
    lines = [
        # Internet -> public VM: passed the NAT hook, not translated.
        "icmp     1 29 src=198.51.100.1 dst=203.0.113.2 type=8 code=0 id=1 "
        "src=203.0.113.2 dst=198.51.100.1 type=0 code=0 id=1 mark=0 use=1",
        # Private VM -> internet: replies go to the gateway's address.
        "tcp      6 431999 ESTABLISHED src=10.1.0.2 dst=198.51.100.1 sport=40000 dport=5007 "
        "src=198.51.100.1 dst=192.0.2.1 sport=5007 dport=40000 [ASSURED] mark=0 use=1",
    ]
    assert snat_flows(lines) == [("10.1.0.2", "192.0.2.1")]


def test_conntrack_stats_sum_the_failure_counters_over_cpus() -> None:
    lines = [
        "cpu=0   \tfound=3 invalid=1 insert=0 insert_failed=2 drop=1 early_drop=0 error=0 "
        "search_restart=5",
        "cpu=1   \tfound=0 invalid=0 insert=0 insert_failed=1 drop=0 early_drop=4 error=1 "
        "search_restart=0",
    ]
    assert conntrack_stats(lines) == {
        "insert_failed": 3, "drop": 1, "early_drop": 4, "error": 1, "invalid": 1
    }  # fmt: skip
