"""Security groups in nftables: rendering, names and small transactions (sg_render, sg_diff)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from l3fabric.dataplane import sg_render
from l3fabric.dataplane.sg_diff import listing_of, parse_listing, transaction
from l3fabric.dataplane.sg_model import SecurityGroup, SgPort, SgRule, SgState
from l3fabric.dataplane.sg_render import (
    DEDICATED_MAX,
    group_chain,
    group_rules,
    ident,
    place,
    port_chain,
    remote_set,
    render,
    rule_text,
    table_text,
)

G1 = "11111111-0000-4000-8000-000000000001"
G2 = "11111111-0000-4000-8000-000000000002"


def _state(n_ports: int = 3) -> SgState:
    groups = {
        G1: SecurityGroup(
            G1,
            (
                SgRule("ingress", "IPv4", remote_group=G1),
                SgRule("ingress", "IPv4", 6, 80, 80),
                SgRule("egress", "IPv4"),
            ),
        ),
        G2: SecurityGroup(G2, (SgRule("ingress", "IPv6", 58, 128, None, "fd00::/8"),)),
    }
    ports = {
        f"tap{i:011d}": SgPort(f"tap{i:011d}", (G1, G2), True, (f"10.0.0.{i}/32",))
        for i in range(n_ports)
    }
    members = {G1: tuple(f"10.0.0.{i}/32" for i in range(n_ports))}
    return SgState(groups, ports, members)


def test_rule_texts() -> None:
    assert rule_text(SgRule("ingress", "IPv4", 6, 80, 90, "10.0.0.0/8")) == (
        "ip saddr 10.0.0.0/8 tcp dport 80-90 accept"
    )
    assert rule_text(SgRule("egress", "IPv6", remote_group=G1)) == f"ip6 daddr @rg6-{G1} accept"
    assert rule_text(SgRule("ingress", "IPv4", 1, 8, 0)) == (
        "meta nfproto ipv4 icmp type 8 icmp code 0 accept"
    )
    assert rule_text(SgRule("ingress", "IPv4", 136, 5, 5)) == (
        "meta nfproto ipv4 meta l4proto 136 th dport 5 accept"
    )
    assert rule_text(SgRule("egress", "IPv6", 47)) == "meta nfproto ipv6 meta l4proto 47 accept"


def test_names_are_injective_and_fit() -> None:
    assert ident(G1) == G1
    upper = "ABCDEF01-0000-4000-8000-000000000001"
    odd = [upper, "default", "a" * 255, "a" * 254 + "b"]
    names = {ident(i) for i in odd} | {ident(upper.lower())}
    assert len(names) == len(odd) + 1
    assert all(len(group_chain(i, "ingress")) < 64 for i in odd)
    # Ports share a chain pair per set of groups: the name follows the groups only.
    assert port_chain((G1, G2), "egress") == port_chain((G1, G2), "egress")
    assert port_chain((G1, G2), "egress").startswith("out-")
    assert len({port_chain(g, "ingress") for g in [(), (G1,), (G2,), (G1, G2), ("default",)]}) == 5
    assert all(len(port_chain(tuple(odd), d)) < 64 for d in ("ingress", "egress"))
    assert remote_set(G1, 6) == f"rg6-{G1}"


def test_layout_golden() -> None:
    rendered = render(_state(1))
    tap = "tap00000000000"
    chain_in, chain_out = port_chain((G1, G2), "ingress"), port_chain((G1, G2), "egress")
    assert rendered.maps == {
        "sg_in": {tap: f"goto {chain_in}"},
        "sg_out": {tap: f"goto {chain_out}"},
    }
    assert rendered.chains[chain_in][:-1] == (
        "icmpv6 type { 133-137 } accept",
        "ct state invalid drop",
        f"jump sgi-{G1}",
        f"jump sgi-{G2}",
    )
    assert rendered.chains[chain_in][-1].startswith('drop comment "sg sha256:')
    assert rendered.chains[f"sgi-{G1}"][:-1] == (
        f"ip saddr @rg4-{G1} accept",
        "meta nfproto ipv4 tcp dport 80 accept",
    )
    assert rendered.chains[f"sge-{G2}"][0].startswith("return comment")  # no egress rule
    assert rendered.sets == {f"rg4-{G1}": ("ipv4_addr", ("10.0.0.0/32",))}
    assert "sg-egress" in rendered.chains and "sg-ingress" in rendered.chains


def test_port_security_off_is_an_accept_and_no_chains() -> None:
    state = _state(1)
    off = dataclasses.replace(state.ports["tap00000000000"], port_security=False, groups=())
    rendered = render(dataclasses.replace(state, ports={"tap00000000000": off}))
    assert rendered.maps["sg_in"] == {"tap00000000000": "accept"}
    assert set(rendered.chains) == {"sg-egress", "sg-ingress", f"sgi-{G1}", f"sge-{G1}",
                                    f"sgi-{G2}", f"sge-{G2}"}  # fmt: skip


def test_ports_with_the_same_groups_share_one_chain_pair() -> None:
    state = _state(1000)
    alone = SgPort("tapalone", (G1,), True, ("10.0.9.1/32",))
    rendered = render(dataclasses.replace(state, ports={**state.ports, "tapalone": alone}))
    # Base chains, two per group, and one pair per set of groups: (G1, G2) and (G1,).
    assert len(rendered.chains) == 2 + 4 + 4
    assert len(set(rendered.maps["sg_in"].values())) == 2
    assert rendered.maps["sg_in"]["tapalone"] == f"goto {port_chain((G1,), 'ingress')}"


def test_group_digest_follows_rules_not_order() -> None:
    a = SecurityGroup(G1, (SgRule("egress", "IPv4"), SgRule("egress", "IPv6")))
    b = SecurityGroup(G1, (SgRule("egress", "IPv6"), SgRule("egress", "IPv4")))
    assert group_rules(a, "egress") == group_rules(b, "egress")
    assert group_rules(a, "egress") != group_rules(SecurityGroup(G1), "egress")


def test_nothing_changed_is_zero_statements() -> None:
    rendered = render(_state())
    assert transaction(rendered, listing_of(rendered)).statements == 0


def test_no_table_is_a_full_replacement() -> None:
    todo = transaction(render(_state()), None)
    assert todo.full and todo.script.startswith("table inet l3fabric-sg\ndelete table")


def test_one_rule_change_touches_one_chain() -> None:
    state = _state(50)
    before = render(state)
    group = state.groups[G1]
    changed = dataclasses.replace(group, rules=(*group.rules, SgRule("ingress", "IPv4", 6, 22, 22)))
    todo = transaction(
        render(dataclasses.replace(state, groups={**state.groups, G1: changed})), listing_of(before)
    )
    assert todo.chains == (f"sgi-{G1}",)
    assert todo.script.splitlines()[0] == f"flush chain inet l3fabric-sg sgi-{G1}"
    assert todo.statements == 5 and not todo.full and todo.narrowed


def test_a_member_change_is_elements_only() -> None:
    state = _state(50)
    before = listing_of(render(state))
    members = {G1: (*state.members[G1][1:], "10.7.0.0/24")}
    todo = transaction(render(dataclasses.replace(state, members=members)), before)
    assert todo.script.splitlines() == [
        f"delete element inet l3fabric-sg rg4-{G1} {{ 10.0.0.0/32 }}",
        f"add element inet l3fabric-sg rg4-{G1} {{ 10.7.0.0/24 }}",
    ]
    assert todo.narrowed
    grown = {G1: (*state.members[G1], "10.7.0.0/24")}
    assert not transaction(render(dataclasses.replace(state, members=grown)), before).narrowed


def test_a_port_that_goes_loses_its_map_entries_and_the_last_one_its_chains() -> None:
    state = _state(3)
    before = listing_of(render(state))
    ports = dict(state.ports)
    del ports["tap00000000002"]
    todo = transaction(render(dataclasses.replace(state, ports=ports)), before)
    chain_in, chain_out = port_chain((G1, G2), "ingress"), port_chain((G1, G2), "egress")
    assert todo.script.splitlines() == [
        f'delete element inet l3fabric-sg taps-{chain_in} {{ "tap00000000002" }}',
        f'delete element inet l3fabric-sg taps-{chain_out} {{ "tap00000000002" }}',
    ]
    todo = transaction(render(dataclasses.replace(state, ports={})), before)
    # The base chains lose the pair's rule before the pair and its tap sets go.
    assert [line for line in todo.script.splitlines() if "add rule" not in line][-6:] == [
        "flush chain inet l3fabric-sg sg-egress",
        "flush chain inet l3fabric-sg sg-ingress",
        f"delete chain inet l3fabric-sg {chain_in}",
        f"delete chain inet l3fabric-sg {chain_out}",
        f"delete set inet l3fabric-sg taps-{chain_in}",
        f"delete set inet l3fabric-sg taps-{chain_out}",
    ]


def _json(rendered) -> str:
    """A kernel listing like ``nft -j`` prints it (only what parse_listing reads)."""
    items: list[dict] = [{"metainfo": {}}]
    tap_sets: dict[str, list[str]] = {
        f"taps-{d}-{k}": [] for k in rendered.dedicated for d in ("in", "out")
    }
    for name, rules in rendered.chains.items():
        items.append({"chain": {"name": name}})
        for rule in rules:
            comment = rule.split('comment "')[1][:-1] if 'comment "' in rule else None
            items.append({"rule": {"chain": name, **({"comment": comment} if comment else {})}})
    for name, (kind, elements) in rendered.sets.items():
        elem = [
            e.split("/")[0]
            if e.endswith(("/32", "/128"))
            else {"prefix": {"addr": e.split("/")[0], "len": int(e.split("/")[1])}}
            for e in elements
        ]
        items.append({"set": {"name": name, "type": kind, "elem": elem}})
    for name, entries in rendered.maps.items():
        elem = []
        for t, v in entries.items():
            where, _ = place(name, t, v, rendered.dedicated)
            if where != name:  # a dedicated pair's tap set
                tap_sets.setdefault(where, []).append(t)
                continue
            verdict = (
                {"accept": None} if v == "accept" else {v.split()[0]: {"target": v.split()[1]}}
            )
            elem.append([t, verdict])
        items.append({"map": {"name": name, "elem": elem}})
    for name, taps in tap_sets.items():
        items.append({"set": {"name": name, "type": "ifname", "elem": taps}})
    return json.dumps({"nftables": items})


def test_listing_round_trip_and_drift() -> None:
    rendered = render(_state(3))
    text = json.loads(_json(rendered))
    assert parse_listing(json.dumps(text)) == listing_of(rendered)
    # A rule deleted by hand from a group chain: that chain alone is rewritten.
    items = text["nftables"]
    first = next(i for i, x in enumerate(items) if x.get("rule", {}).get("chain") == f"sgi-{G1}")
    del items[first]
    todo = transaction(rendered, parse_listing(json.dumps(text)))
    assert todo.chains == (f"sgi-{G1}",) and not todo.full


def test_a_new_port_of_a_dedicated_pair_is_one_plain_element_per_direction() -> None:
    state = _state(100)
    before = render(state)
    chain_in, chain_out = port_chain((G1, G2), "ingress"), port_chain((G1, G2), "egress")
    assert before.dedicated == (chain_in[3:],)
    assert before.chains["sg-ingress"][:-1] == (
        "ct state established,related accept",
        f"oifname @taps-{chain_in} goto {chain_in}",
        "oifname vmap @sg_in",
    )
    new = SgPort("tapnew", (G1, G2), True, ("10.0.0.200/32",))
    after = render(dataclasses.replace(state, ports={**state.ports, "tapnew": new}))
    lines = transaction(after, listing_of(before)).script.splitlines()
    # No verdict-map element with a goto: nothing for the kernel to validate at commit.
    assert [line for line in lines if "rg4" not in line] == [
        f'add element inet l3fabric-sg taps-{chain_in} {{ "tapnew" }}',
        f'add element inet l3fabric-sg taps-{chain_out} {{ "tapnew" }}',
    ]
    full = transaction(after, None).script
    assert "goto" not in full.split("map sg_in")[1].split("}")[0]


def _groups_state(n_pairs: int) -> SgState:
    """One port per pair: port i alone in group i (ids sort like the ports)."""
    groups = {f"g{i:03d}": SecurityGroup(f"g{i:03d}") for i in range(n_pairs)}
    ports = {f"tap{i:011d}": SgPort(f"tap{i:011d}", (f"g{i:03d}",)) for i in range(n_pairs)}
    return SgState(groups, ports)


def test_pairs_beyond_the_dedicated_ones_keep_the_verdict_maps() -> None:
    state = _groups_state(DEDICATED_MAX + 3)
    rendered = render(state)
    keys = sorted(port_chain((g,), "ingress")[3:] for g in state.groups)
    assert rendered.dedicated == tuple(keys[:DEDICATED_MAX])
    # Per packet: at most DEDICATED_MAX set lookups, then the map.
    assert len(rendered.chains["sg-egress"]) == 1 + DEDICATED_MAX + 2
    text = table_text(rendered)
    for key in keys[DEDICATED_MAX:]:
        assert f": goto in-{key}" in text and f"taps-in-{key}" not in text
    assert parse_listing(_json(rendered)) == listing_of(rendered)
    assert transaction(rendered, parse_listing(_json(rendered))).statements == 0


def test_a_new_pair_is_a_patch_unless_a_pair_that_stays_would_move(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    four = _groups_state(4)
    order = sorted(four.ports, key=lambda t: port_chain(four.ports[t].groups, "ingress"))

    def without(tap: str) -> SgState:
        return SgState(four.groups, {t: p for t, p in four.ports.items() if t != tap})

    def key(tap: str) -> str:
        return port_chain(four.ports[tap].groups, "ingress")[3:]

    # Room for all: the new pair's tap sets and the base chains' new rules.
    todo = transaction(render(four), listing_of(render(without(order[0]))))
    assert not todo.full
    assert f"add set inet l3fabric-sg taps-in-{key(order[0])} {{ type ifname; }}" in todo.script
    assert "flush chain inet l3fabric-sg sg-ingress" in todo.script
    monkeypatch.setattr(sg_render, "DEDICATED_MAX", 3)
    # No room, and the new pair sorts last: its tap goes to the maps, a patch.
    todo = transaction(render(four), listing_of(render(without(order[3]))))
    assert not todo.full and "sg-ingress" not in todo.script
    assert f'add element inet l3fabric-sg sg_in {{ "{order[3]}" : goto in-{key(order[3])} }}' in (
        todo.script
    )
    # It sorts first: it pushes a pair that stays out of its tap set, so all
    # of that pair's taps would move: the table is replaced in one transaction.
    assert transaction(render(four), listing_of(render(without(order[0])))).full


def test_a_tap_in_two_places_is_repaired_by_a_replacement() -> None:
    rendered = render(_state(2))
    text = json.loads(_json(rendered))
    for item in text["nftables"]:
        if item.get("map", {}).get("name") == "sg_in":
            item["map"]["elem"].append(["tap00000000000", {"accept": None}])
    listing = parse_listing(json.dumps(text))
    assert listing.conflict and transaction(rendered, listing).full
    # A pair with one tap set of two, or a set of ours that no pair makes: replaced too.
    items = json.loads(_json(rendered))["nftables"]
    half = [i for i in items if i.get("set", {}).get("name") != f"taps-out-{rendered.dedicated[0]}"]
    stranger = [*items, {"set": {"name": "taps-in-x", "type": "ifname", "elem": []}}]
    for case in (half, stranger):
        listing = parse_listing(json.dumps({"nftables": case}))
        assert listing.conflict and transaction(rendered, listing).full
