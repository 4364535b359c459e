"""Rendering of the anti-spoofing table (no kernel needed)."""

from __future__ import annotations

import json

import pytest

from l3fabric.dataplane.nft import (
    digest_of,
    element_changes,
    elements_script,
    parse_listing,
    render,
    skeleton_digest,
)

LISTING = json.dumps({"nftables": [
    {"metainfo": {"version": "1.0.6"}},
    {"table": {"family": "inet", "name": "l3fabric", "handle": 1}},
    {"set": {"name": "allowed4", "elem": [
        {"concat": ["tapa", "10.1.0.5"]},
        {"concat": ["tapa", {"prefix": {"addr": "10.7.0.0", "len": 24}}]},
    ]}},
    {"set": {"name": "allowed6", "elem": [{"concat": ["tapb", "2001:db8::5"]}]}},
    {"rule": {"chain": "prerouting", "comment": "l3fabric sha256:" + "ab" * 32, "expr": []}},
    {"rule": {"chain": "prerouting", "expr": []}},
]})  # fmt: skip


def _set_text(text: str, name: str) -> str:
    """The declaration of set ``name`` in a rendered table."""
    start = text.index(f"set {name} {{")
    return text[start : text.index("\n\t}", start)]


def test_one_rule_per_family_and_kind_serves_every_tap() -> None:
    text = render({"tapb": ["10.1.0.6/32"], "tapa": ["10.1.0.5/32", "2001:db8::5/128"]})
    assert '"tapa" . 10.1.0.5,\n\t\t\t"tapb" . 10.1.0.6' in _set_text(text, "allowed4")
    assert '"tapa" . 2001:db8::5' in _set_text(text, "allowed6")
    for name in ("allowed4", "allowed4net", "allowed6", "allowed6net"):
        assert text.count(f"@{name} ") == 1
    assert "priority raw" in text and 'iifname != "tap*" accept' in text
    assert text.rstrip().endswith("counter drop\n\t}\n}".rstrip())


def test_overlapping_sources_are_merged() -> None:
    text = render({"tapa": ["10.1.0.5/32", "10.1.0.0/24", "10.1.0.7"]})
    assert '"tapa" . 10.1.0.0/24' in text and "10.1.0.5" not in text


def test_host_addresses_go_to_hash_sets_and_prefixes_to_interval_sets() -> None:
    # One element into an interval set makes the kernel check the whole set
    # for overlap at the commit; a port's fixed IPs (the common case) are hashed.
    text = render({"tapa": ["10.1.0.5/32", "10.9.0.0/24", "2001:db8::5/128", "2001:db8:9::/64"]})
    assert "flags interval" not in _set_text(text, "allowed4")
    assert "flags interval" not in _set_text(text, "allowed6")
    assert "flags interval" in _set_text(text, "allowed4net")
    assert "flags interval" in _set_text(text, "allowed6net")
    assert '"tapa" . 10.1.0.5' in _set_text(text, "allowed4")
    assert '"tapa" . 10.9.0.0/24' in _set_text(text, "allowed4net")
    assert '"tapa" . 2001:db8::5' in _set_text(text, "allowed6")
    assert '"tapa" . 2001:db8:9::/64' in _set_text(text, "allowed6net")
    script = elements_script([("tapa", "10.1.0.6/32"), ("tapa", "10.8.0.0/16")], [])
    assert 'add element inet l3fabric allowed4 { "tapa" . 10.1.0.6 }' in script
    assert 'add element inet l3fabric allowed4net { "tapa" . 10.8.0.0/16 }' in script


def test_rendering_follows_content_not_order_and_the_digest_covers_the_rules_only() -> None:
    a = render({"tapa": ["10.1.0.5/32", "10.1.0.9/32"], "tapb": []})
    b = render({"tapb": [], "tapa": ["10.1.0.9/32", "10.1.0.5/32"]})
    assert a == b and digest_of(a) == skeleton_digest()
    # Elements change one by one (incremental passes); the digest marks the rules.
    assert digest_of(render({"tapa": ["10.1.0.5/32"]})) == digest_of(a)


def test_a_listing_reads_back_elements_rules_and_digest() -> None:
    listing = parse_listing(LISTING)
    assert listing.digest == "ab" * 32
    assert listing.rules == {"prerouting": 2}
    assert listing.elements == {
        "tapa": frozenset({"10.1.0.5/32", "10.7.0.0/24"}),
        "tapb": frozenset({"2001:db8::5/128"}),
    }


def test_element_changes_delete_then_add_only_what_differs() -> None:
    current = {"tapa": frozenset({"10.1.0.5/32"}), "tapb": frozenset({"10.1.0.6/32"})}
    desired = {"tapa": ("10.1.0.0/24",), "tapb": ("10.1.0.6/32",), "tapc": ("10.1.0.7/32",)}
    add, delete = element_changes(current, desired)
    assert add == [("tapa", "10.1.0.0/24"), ("tapc", "10.1.0.7/32")]
    assert delete == [("tapa", "10.1.0.5/32")]
    assert element_changes(current, {"tapb": ("10.1.0.6/32",)}) == ([], [("tapa", "10.1.0.5/32")])
    script = elements_script(add, delete)
    assert script.index("delete element") < script.index("add element")
    assert 'allowed4net { "tapa" . 10.1.0.0/24 }' in script
    assert 'allowed4 { "tapc" . 10.1.0.7 }' in script


def test_a_lone_host_address_renders_as_in_any_other_spelling() -> None:
    lone = render({"tapa": ["10.1.0.5/32"], "tapb": ["2001:db8::5/128"]})
    assert lone == render({"tapa": ["10.1.0.5"], "tapb": ["2001:db8::5"]})
    assert lone == render({"tapa": ["10.1.0.5/32", "10.1.0.5"], "tapb": ["2001:db8::5/128"]})


def test_empty_state_drops_everything_from_taps() -> None:
    text = render({})
    assert "elements" not in text and "counter drop" in text


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"eth0": ["10.0.0.1/32"]}, "bad tap name"),
        ({"tapa": ["10.0.0.300/32"]}, "bad allowed source"),
        ({"tapa": ["010.0.0.1/32"]}, "bad allowed source"),  # a lone /32: the fast path
    ],
)
def test_bad_input_names_what_is_wrong(state, message) -> None:
    with pytest.raises(ValueError, match=message):
        render(state)


def test_isolated_interfaces_get_a_forward_drop_for_taps() -> None:
    text = render({"tapa": ["10.1.0.5/32"]}, isolated=["l3f-mgmt", "eth9"])
    assert 'iifname "tap*" oifname { "eth9", "l3f-mgmt" } counter drop' in text
    assert "hook forward" not in render({"tapa": ["10.1.0.5/32"]})
    assert digest_of(text) != digest_of(render({"tapa": ["10.1.0.5/32"]}))


def test_isolated_interface_names_are_checked() -> None:
    with pytest.raises(ValueError, match="bad interface name"):
        render({}, isolated=['eth0" accept; #'])
