"""The gateway's NAT table rendering: who is NATed, what is shielded, digest stability."""

from __future__ import annotations

import pytest

from l3fabric.dataplane.nft import digest_of
from l3fabric.gateway.nat import policy, render, snat_flows


def test_private_sources_leaving_upstream_are_snated_to_the_registered_address() -> None:
    text = render(policy(["10.1.0.0/24", "fd00:1::/64"], ["l3f-u0"], "192.0.2.1"))
    assert 'elements = { "l3f-u0" }' in text
    assert "elements = { 10.1.0.0/24 }" in text
    assert "oifname @upstream ip saddr @private4 counter snat ip to 192.0.2.1" in text
    # No IPv6 SNAT address registered: masquerade.
    assert "oifname @upstream ip6 saddr @private6 counter masquerade" in text


def test_inbound_to_private_is_dropped_after_conntrack_accepts_replies() -> None:
    text = render(policy(["10.1.0.0/24"], ["l3f-u0"], None))
    forward = text.split("chain forward {")[1]
    established = forward.index("ct state established,related accept")
    assert established < forward.index("iifname @upstream ip daddr @private4 counter drop")
    assert "masquerade" in text


def test_public_ranges_are_not_in_the_table() -> None:
    text = render(policy(["10.1.0.0/24"], ["l3f-u0"], None))
    assert "203.0.113" not in text


def test_digest_follows_content_only() -> None:
    a = render(policy(["10.1.0.0/24"], ["l3f-u0"], None))
    assert digest_of(a) == digest_of(render(policy(["10.1.0.0/24"], ["l3f-u0"], None)))
    assert digest_of(a) != digest_of(
        render(policy(["10.1.0.0/24", "10.2.0.0/24"], ["l3f-u0"], None))
    )


@pytest.mark.parametrize(
    ("private", "ifaces", "snat"),
    [(["10.1.0.1/24"], [], None), ([], ["bad name"], None), ([], [], "not-an-ip")],
)
def test_bad_input_is_refused(private: list[str], ifaces: list[str], snat: str | None) -> None:
    with pytest.raises(ValueError):
        policy(private, ifaces, snat)


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
