"""Security groups as nftables objects: pure rendering of an ``SgState`` (docs/security-groups.md).

Table ``inet l3fabric-sg`` (its own table beside the anti-spoofing one, see the
docs for why) holds:

- two base chains on the forward hook, ``sg-egress`` (priority filter + 10,
  what a VM sends, keyed by ``iifname``) and ``sg-ingress`` (filter + 20,
  what a VM receives, ``oifname``), each opening with ``ct state
  established,related accept``, then one rule per *dedicated* chain pair
  (``oifname @taps-in-<key> goto in-<key>``: a plain set of the pair's
  taps), then the verdict maps ``@sg_out`` / ``@sg_in`` for every other tap
  (port security off: ``accept``; a pair beyond the first ``DEDICATED_MAX``:
  ``goto`` its chain), then ``tap*`` dropped (fail closed);
- per set of groups ``out-<key>`` / ``in-<key>`` (``key`` a digest of the
  port's group ids, in order): ND accepted, invalid dropped, one ``jump`` per
  group, then ``drop``. Every port with the same groups maps to the same
  pair, so 10,000 ports in their default group need two chains, not 20,000:
  nft reads every chain of the namespace before each change and the kernel
  validates every chain reachable from a base chain at each commit, so a
  change's cost grew with the number of chains (docs/benchmarks.md);
- why the dedicated sets: a verdict-map element with a ``goto`` makes the
  kernel validate the whole table at commit, walking every element of every
  verdict map (~1.8 ms of CPU per commit at 10,000 ports, 0.25 ms at 100);
  a plain set element adds no validation (0.2 ms at both sizes). So a port
  of a dedicated pair is one plain set element per direction, O(1) in the
  kernel; per packet (the first of a flow only) it costs one set lookup
  per dedicated pair before its own, at most ``DEDICATED_MAX``; the pairs
  beyond those (sorted by key) keep the verdict map: one lookup, O(their
  ports) per commit;
- per group ``sge-<id>`` / ``sgi-<id>``: that group's rules, each ``accept``,
  then ``return``;
- per remote group and family an interval set ``rg4-<id>`` / ``rg6-<id>``
  of member prefixes, shared by every rule that references it.

Every chain's last rule carries ``sg sha256:<16 hex>``, the digest of its
rules, so a listing shows which chain drifted (sg_diff.py). ``Rendered.maps``
holds every tap's logical verdict (``goto in-<key>`` or ``accept``);
``place`` says where it lives in the kernel (a pair's tap set or the map).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from l3fabric.dataplane.sg_model import (
    ICMP_PROTOCOLS,
    SCTP,
    TCP,
    UDP,
    SecurityGroup,
    SgPort,
    SgRule,
    SgState,
)

FAMILY = "inet"
TABLE = "l3fabric-sg"
MAP_OUT, MAP_IN = "sg_out", "sg_in"
_TAP = re.compile(r"^tap[A-Za-z0-9_-]{1,12}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# ICMPv6 router/neighbour solicitation/advertisement and redirect.
ND_TYPES = frozenset(range(133, 138))
_PORT_WORDS = {TCP: "tcp", UDP: "udp", SCTP: "sctp"}
_ICMP_WORDS = {4: "icmp", 6: "icmpv6"}

# At most this many chain pairs get a plain tap set and a rule in each base
# chain (the first packet of a flow tries them in turn); the rest go through
# the verdict maps.
DEDICATED_MAX = 16


@dataclass(frozen=True)
class Base:
    """A base chain: its hook line, the interface it keys on, its map and pair-chain prefix."""

    head: str
    ifname: str
    vmap: str
    prefix: str


BASE_CHAINS = {
    "sg-egress": Base(
        "type filter hook forward priority filter + 10; policy accept;", "iifname", MAP_OUT, "out"
    ),
    "sg-ingress": Base(
        "type filter hook forward priority filter + 20; policy accept;", "oifname", MAP_IN, "in"
    ),
}
_PREFIX = {base.vmap: base.prefix for base in BASE_CHAINS.values()}
TAP_SET = "taps-"


def ident(object_id: str) -> str:
    """An id as a name part: a lowercase UUID as it is, anything else hashed (no dashes).

    Injective across both kinds: a hash never looks like a UUID.
    """
    if _UUID.match(object_id):
        return object_id
    return "h" + hashlib.sha256(object_id.encode()).hexdigest()[:40]


def group_chain(group_id: str, direction: str) -> str:
    return f"{'sgi' if direction == 'ingress' else 'sge'}-{ident(group_id)}"


def port_chain(groups: tuple[str, ...], direction: str) -> str:
    """The chain shared by every port with ``groups`` (in this order) in ``direction``."""
    key = hashlib.sha256(",".join(ident(g) for g in groups).encode()).hexdigest()[:20]
    return f"{'in' if direction == 'ingress' else 'out'}-{key}"


def remote_set(group_id: str, version: int) -> str:
    return f"rg{version}-{ident(group_id)}"


def digest(rules: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(rules).encode()).hexdigest()[:16]


def _remote(rule: SgRule) -> str:
    ip = "ip" if rule.version == 4 else "ip6"
    side = "saddr" if rule.direction == "ingress" else "daddr"
    if rule.remote_group:
        return f"{ip} {side} @{remote_set(rule.remote_group, rule.version)}"
    if rule.remote_prefix:
        return f"{ip} {side} {rule.remote_prefix}"
    return f"meta nfproto ipv{rule.version}"


def _protocol(rule: SgRule) -> str:
    proto = rule.protocol
    if proto is None:
        return ""
    if proto in ICMP_PROTOCOLS:
        word = _ICMP_WORDS[rule.version]
        if rule.port_min is None:
            return f"meta l4proto {proto}"
        code = "" if rule.port_max is None else f" {word} code {rule.port_max}"
        return f"{word} type {rule.port_min}{code}"
    if rule.port_min is None:
        return f"meta l4proto {proto}"
    ports = str(rule.port_min)
    if rule.port_max != rule.port_min:
        ports += f"-{rule.port_max}"
    if proto in _PORT_WORDS:
        return f"{_PORT_WORDS[proto]} dport {ports}"
    return f"meta l4proto {proto} th dport {ports}"


def rule_text(rule: SgRule) -> str:
    """One rule as an nft statement (accept on match)."""
    return " ".join(p for p in (_remote(rule), _protocol(rule), "accept") if p)


def _sealed(rules: list[str], last: str, head: str = "") -> tuple[str, ...]:
    """``rules`` + ``last``, which carries the digest of them all (and of a base chain's ``head``)."""
    body = (head, *rules, last) if head else (*rules, last)
    return (*rules, f'{last} comment "sg sha256:{digest(body)}"')


def group_rules(group: SecurityGroup, direction: str) -> tuple[str, ...]:
    texts = sorted({rule_text(r) for r in group.direction(direction)})  # type: ignore[arg-type]
    return _sealed(texts, "return")


def port_rules(groups: tuple[str, ...], direction: str) -> tuple[str, ...]:
    jumps = [f"jump {group_chain(g, direction)}" for g in groups]
    return _sealed(
        [
            # Neighbour discovery never crosses forward (link-local), kept for clarity.
            "icmpv6 type { 133-137 } accept",
            "ct state invalid drop",
            *jumps,
        ],
        "drop",
    )


def pair_chain(vmap: str, key: str) -> str:
    """The chain of pair ``key`` that ``vmap``'s direction goes to (``port_chain``'s name)."""
    return f"{_PREFIX[vmap]}-{key}"


def tap_set(vmap: str, key: str) -> str:
    """The plain set of the taps that ``vmap`` would send to the pair ``key``."""
    return TAP_SET + pair_chain(vmap, key)


def dedicated(chains: Iterable[str]) -> tuple[str, ...]:
    """The pairs (keys) that get tap sets: the first ``DEDICATED_MAX`` of ``chains``' pairs.

    A pure function of the pairs present, so incremental and full passes agree.
    """
    return tuple(sorted(name[3:] for name in chains if name.startswith("in-"))[:DEDICATED_MAX])


def base_rules(name: str, keys: tuple[str, ...] = ()) -> tuple[str, ...]:
    """A base chain's rules (its hook line left out), the last one sealed; ``keys``: dedicated."""
    base = BASE_CHAINS[name]
    vmap = base.vmap
    pairs = [f"{base.ifname} @{tap_set(vmap, k)} goto {pair_chain(vmap, k)}" for k in keys]
    rules = ["ct state established,related accept", *pairs, f"{base.ifname} vmap @{vmap}"]
    return _sealed(rules, f'{base.ifname} "tap*" drop', base.head)


def base_chains(keys: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    return {name: base_rules(name, keys) for name in BASE_CHAINS}


def place(vmap: str, tap: str, verdict: str, keys: Collection[str]) -> tuple[str, str]:
    """Where a tap's ``verdict`` lives: (set or map name, element text)."""
    key = verdict.partition("-")[2] if verdict.startswith("goto ") else ""
    if key in keys:
        return tap_set(vmap, key), f'"{tap}"'
    return vmap, map_element(tap, verdict)


@dataclass(frozen=True)
class Rendered:
    """The table as objects: chains (rules), sets (type, elements), verdicts per tap, dedicated pairs.

    ``maps``: each tap's verdict per direction, wherever it lives (``place``);
    ``dedicated``: the pairs with tap sets (``dedicated(chains)``).
    """

    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sets: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    maps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    dedicated: tuple[str, ...] = ()


def group_chains(group: SecurityGroup) -> dict[str, tuple[str, ...]]:
    """The chains of one group (both directions)."""
    return {group_chain(group.id, d): group_rules(group, d) for d in ("ingress", "egress")}


@functools.lru_cache(maxsize=4096)
def _port_pair(groups: tuple[str, ...]) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """(verdict map, chain, rules) per direction for a port in ``groups``.

    Cached: 10,000 ports in one group would otherwise hash and render the
    same pair 10,000 times a full pass.
    """
    return tuple(
        (vmap, port_chain(groups, direction), port_rules(groups, direction))
        for direction, vmap in (("ingress", MAP_IN), ("egress", MAP_OUT))
    )


def port_objects(port: SgPort) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """One port's chains (shared with every port in the same groups) and its verdict per map.

    None with port security off. ValueError for a bad tap name.
    """
    if not _TAP.match(port.tap):
        raise ValueError(f"bad tap name {port.tap!r}")
    if not port.port_security:
        return {}, {MAP_IN: "accept", MAP_OUT: "accept"}
    pair = _port_pair(port.groups)
    return {name: rules for _, name, rules in pair}, {
        vmap: f"goto {name}" for vmap, name, _ in pair
    }


def remote_sets(state: SgState) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The member sets the groups' ``remote_group_id`` rules use."""
    sets: dict[str, tuple[str, tuple[str, ...]]] = {}
    for group in state.groups.values():
        for rule in group.rules:
            if rule.remote_group:
                name = remote_set(rule.remote_group, rule.version)
                members = state.members.get(rule.remote_group, ())
                elements = tuple(m for m in members if (":" in m) == (rule.version == 6))
                sets[name] = ("ipv4_addr" if rule.version == 4 else "ipv6_addr", elements)
    return sets


def render(state: SgState) -> Rendered:
    """The nft objects of ``state`` (base chains included)."""
    chains: dict[str, tuple[str, ...]] = {}
    maps: dict[str, dict[str, str]] = {MAP_OUT: {}, MAP_IN: {}}
    for group in state.groups.values():
        chains.update(group_chains(group))
    for tap in sorted(state.ports):
        port_chains, verdicts = port_objects(state.ports[tap])
        chains.update(port_chains)
        for vmap, verdict in verdicts.items():
            maps[vmap][tap] = verdict
    keys = dedicated(chains)
    return Rendered({**base_chains(keys), **chains}, remote_sets(state), maps, keys)


def set_decl(name: str, kind: str) -> str:
    """A set's declaration: interval flags for the member sets, none for tap sets (``ifname``)."""
    flags = "" if kind == "ifname" else " flags interval;"
    return f"set {name} {{ type {kind};{flags} }}"


def map_decl(name: str) -> str:
    return f"map {name} {{ type ifname : verdict; }}"


def map_element(tap: str, verdict: str) -> str:
    return f'"{tap}" : {verdict}'


def table_text(rendered: Rendered) -> str:
    """The whole table, for ``nft -f`` (declared objects first; nft resolves references)."""
    lines = [f"table {FAMILY} {TABLE} {{"]
    placed: dict[str, list[str]] = {vmap: [] for vmap in rendered.maps}
    for vmap in rendered.maps:
        placed.update({tap_set(vmap, k): [] for k in rendered.dedicated})
    for vmap, entries in rendered.maps.items():
        for tap, verdict in sorted(entries.items()):
            name, element = place(vmap, tap, verdict, rendered.dedicated)
            placed[name].append(element)
    decls = {name: "type ifname : verdict" for name in rendered.maps}
    decls.update({name: "type ifname" for name in placed if name not in rendered.maps})
    for name, (kind, elements) in rendered.sets.items():
        decls[name] = f"type {kind}\n\t\tflags interval"
        placed[name] = list(elements)
    for name, decl in sorted(decls.items()):
        kind = "map" if name in rendered.maps else "set"
        lines.append(f"\t{kind} {name} {{\n\t\t{decl}")
        if placed[name]:
            lines.append(f"\t\telements = {{ {', '.join(placed[name])} }}")
        lines.append("\t}")
    for name, rules in sorted(rendered.chains.items()):
        lines.append(f"\tchain {name} {{")
        if name in BASE_CHAINS:
            lines.append(f"\t\t{BASE_CHAINS[name].head}")
        lines += [f"\t\t{r}" for r in rules]
        lines.append("\t}")
    return "\n".join(lines) + "\n}\n"
