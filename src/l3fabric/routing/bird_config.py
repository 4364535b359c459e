"""BIRD 2 configuration: a typed model and its rendering through a Jinja2 template.

One model serves every BIRD of the fabric: a compute host (exports only the
endpoint routes the agent installed), and plain routers of the lab (ToRs, the
internet router, the gateway until it has its own agent), which pick per-peer
import/export policies from a small set and may originate static routes.

A host announces its local endpoints (the /32 and /128 routes the agent put
in the kernel) through the kernel protocol ``endpoints4``/``endpoints6``: it
*learns* them from a kernel routing table of their own (``endpoints_table``,
150 on a host; no ip rule ever points at it, so it never forwards), where
the agent writes one ``blackhole`` route per endpoint once its real route is
in place (dataplane/announce.py). Adding or withdrawing one endpoint is then
one netlink message that BIRD picks up in milliseconds, with no configure:
a configure re-parses the whole file (two parses, ~50 ms, with 10,000 static
routes in it). The routes have no interface, so BIRD's per-interface cost of
learning (~0.9 s for 10,000 routes over 10,000 taps) does not apply: 10,000
blackholes reach a peer's kernel ~0.13 s after ``ip -batch`` starts writing
them (docs/benchmarks.md). They are learned into a BIRD table of their own
(``endpoints_in4``/``6``; BIRD allows one kernel protocol per BIRD table) and
piped into master; the kernel protocol of the main table never exports them
(their source is ``RTS_INHERIT``, not BGP). They get preference 200, above
BGP's 100: when a peer also announces one of our local endpoints (an address
that just moved here), the local route stays best, so the host keeps
announcing it and BIRD never installs the remote path over it; the moment
the local endpoint is withdrawn, the BGP route takes over. Routes from BGP
and static protocols are exported to the kernel, except the host's anycast
announcements: the agent forwards those.

A host announces each anycast address it serves as a blackhole route of its
static protocol ``anycast4``/``anycast6``, tagged with the large community of
``routing.anycast_marker`` (how many healthy local members). The agent
forwards the address itself (a resilient nexthop group, protocol 97); the
blackhole exists only to be announced, so the kernel protocol never installs
it, and the "endpoints" policy exports it to the host's peers.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cache, cached_property, lru_cache
from typing import Literal, NamedTuple, get_args

import jinja2

from l3fabric.addresses import (
    Address,
    Network,
    parse_address,
    require_address,
    require_network,
)
from l3fabric.routing import anycast_marker

PolicyKind = Literal[
    "endpoints", "all", "none", "default-only", "prefixes", "originated", "origin", "next-hop"
]
POLICY_KINDS: tuple[str, ...] = get_args(PolicyKind)
StaticAction = Literal["blackhole", "unreachable"]
# A prefix pattern as BIRD writes it: CIDR, optionally "+" (and longer) or "{a,b}".
_PATTERN = re.compile(r"^(?P<cidr>[0-9A-Fa-f:.]+/\d{1,3})(?P<suffix>\+|\{\d{1,3},\d{1,3}\})?$")
# Text inside a BIRD string: printable, and no quote or backslash to end or escape it.
_SAFE_TEXT = re.compile(r'[^"\\\x00-\x1f\x7f]*')
# A session's peer name: API names ([A-Za-z0-9._-]), or parts of them joined by ":".
_SESSION_NAME = re.compile(r"[A-Za-z0-9._-]+(?::[A-Za-z0-9._-]+)*")
_MAX_SYMBOL = 64  # BIRD: "Symbol too long" beyond, quotes not counted
_DIGEST_HEX = 32
SessionRole = Literal["h", "g", "rr", "p", "up"]
# What a BGP session's protocol name starts with, by whom the peer is:
# h: a registered host (mesh; a gateway's derived fabric peers)
# g: a gateway's fabric address ("g:gw1:0", its first), as hosts derive them
# rr: a route reflector by its index in the fabric config ("rr:0")
# p: a peer named in a registration (a host's peers, a gateway's fabric_peers)
# up: a gateway's upstream peer
SESSION_ROLES: tuple[str, ...] = get_args(SessionRole)
# The static protocols of anycast announcements: "anycast4" and "anycast6".
ANYCAST_PROTOCOL = "anycast"
# The kernel protocols that learn the host's endpoint announcements: "endpoints4" and "endpoints6".
ENDPOINTS_PROTOCOL = "endpoints"
# The ROA tables "roas4" and "roas6", filled by the static protocols "origins4/6".
ROA_TABLE = "roas"


@dataclass(frozen=True)
class Policy:
    """Which routes pass a channel filter.

    - ``endpoints``: the host's announcements of its endpoints (learned by
      the kernel protocols ``endpoints4/6``) and anycast addresses (static
      protocols ``anycast4/6``);
      with ``prefixes``, only those inside them.
    - ``all`` / ``none``: everything / nothing.
    - ``default-only``: 0.0.0.0/0 and ::/0.
    - ``prefixes``: routes matching the patterns (``10.0.0.0/8`` exact,
      ``10.0.0.0/8+`` or longer, ``10.0.0.0/8{24,32}`` a length range).
    - ``originated``: routes this BIRD originates itself (its static routes),
      only those matching the patterns: never a route learned from a peer,
      so nothing learned from one neighbour is passed on to another.
    - ``origin``: routes whose origin AS the ROA table ``roas4``/``roas6``
      validates (``roa_check`` is ROA_VALID: a ``route P max L as A`` entry
      covers the prefix with its origin AS), and routes matching the patterns.
    - ``next-hop``: each of an owner's prefixes only with the owner's address
      as BGP next hop (``owners``: (address, exact prefixes)), and routes
      matching the patterns: iBGP reflectors keep the originator's next hop.
    """

    kind: PolicyKind
    prefixes: tuple[str, ...] = ()
    owners: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in POLICY_KINDS:
            raise ValueError(f"unknown policy {self.kind!r}: use one of {', '.join(POLICY_KINDS)}")
        takes = ("endpoints", "prefixes", "originated", "origin", "next-hop")
        if self.prefixes and self.kind not in takes:
            raise ValueError(f"policy {self.kind!r} takes no prefixes")
        if self.owners and self.kind != "next-hop":
            raise ValueError(f"policy {self.kind!r} takes no owners")
        for pattern in (*self.prefixes, *(p for _, owned in self.owners for p in owned)):
            _split_pattern(pattern)
        for address, _ in self.owners:
            parse_address(address)  # ValueError for anything but an address

    @classmethod
    def parse(cls, value: str | dict[str, list[str]] | Policy) -> Policy:
        """From a YAML-friendly value: ``"all"`` or ``{"prefixes": ["203.0.113.0/24"]}``."""
        if isinstance(value, Policy):
            return value
        if isinstance(value, str):
            return cls(value)  # type: ignore[arg-type]
        if isinstance(value, dict) and len(value) == 1:
            ((kind, prefixes),) = value.items()
            if isinstance(prefixes, list):
                return cls(kind, tuple(str(p) for p in prefixes))  # type: ignore[arg-type]
        raise ValueError(f"bad policy {value!r}: a name or {{name: [prefix, ...]}}")

    def filter_body(self, version: int) -> str:
        """The BIRD filter statements for one channel of IP version ``version``."""
        split = (_split_pattern(p) for p in self.prefixes)
        patterns = [p.text for p in split if p.net.version == version]
        in_set = "net ~ [ " + ", ".join(patterns) + " ]" if patterns else "false"
        if self.kind == "all":
            return "accept;"
        if self.kind == "none":
            return "reject;"
        if self.kind == "default-only":
            return "if net.len = 0 then accept; reject;"
        if self.kind == "prefixes":
            return f"if {in_set} then accept; reject;"
        if self.kind == "originated":
            return f"if source = RTS_STATIC && {in_set} then accept; reject;"
        if self.kind == "origin":
            valid = f"roa_check({ROA_TABLE}{version}, net, bgp_path.last) = ROA_VALID"
            return f"if {valid} || {in_set} then accept; reject;"
        if self.kind == "next-hop":
            owned = [
                f"if net ~ [ {', '.join(mine)} ] && bgp_next_hop = {parse_address(address)}"
                " then accept; "
                for address, prefixes in self.owners
                if parse_address(address).version == version
                and (mine := [p for p in prefixes if _split_pattern(p).net.version == version])
            ]
            return "".join(owned) + f"if {in_set} then accept; reject;"
        only_in = f" && {in_set}" if self.prefixes else ""
        ours = (
            f'(source = RTS_INHERIT && proto = "{ENDPOINTS_PROTOCOL}{version}")'
            f' || (source = RTS_STATIC && proto = "{ANYCAST_PROTOCOL}{version}")'
        )
        return f"if ({ours}){only_in} then accept; reject;"


class Pattern(NamedTuple):
    """A prefix pattern (``10.0.0.0/8+``), parsed."""

    net: ipaddress.IPv4Network | ipaddress.IPv6Network
    suffix: str  # "", "+" or "{a,b}"
    text: str  # as rendered: from the parsed network, never the text as given


# A gateway's config holds every bound port's prefix in its filters, and each
# pass renders all of them: each is parsed and rendered once, not on every
# pass (10,000 of them took ~0.1 s of ipaddress parsing a pass, three times
# over, and as much again to print them). Bounded: ~200 bytes an entry.
PARSED_PATTERNS = 1 << 15


@lru_cache(maxsize=PARSED_PATTERNS)
def _split_pattern(pattern: str) -> Pattern:
    match = _PATTERN.match(pattern)
    if not match:
        raise ValueError(f"bad prefix pattern {pattern!r}: e.g. 10.0.0.0/8, 10.0.0.0/8+")
    try:
        net = ipaddress.ip_network(match["cidr"], strict=True)
    except ValueError as exc:
        raise ValueError(f"bad prefix pattern {pattern!r}: {exc}") from None
    suffix = match["suffix"] or ""
    return Pattern(net, suffix, f"{net}{suffix}")


def _check_text(what: str, value: str) -> None:
    if not isinstance(value, str) or not _SAFE_TEXT.fullmatch(value):
        raise ValueError(f"{what} must not contain quotes, backslashes or control characters")


def _check_asn(asn: int, what: str) -> None:
    if not 1 <= asn <= 4294967295:
        raise ValueError(f"{what} {asn} is not an AS number (1..4294967295)")


def protocol_name(role: SessionRole, name: str) -> str:
    """The BIRD protocol name of the session with peer ``name`` in ``role``: ``h:compute-1``.

    Injective by construction: a role never contains ``:``, so the first
    ``:`` splits the symbol back into role and name, and names differing in
    any character (``a.b``, ``a-b``, ``a_b``) stay different. BIRD takes
    ``[A-Za-z0-9_.:-]`` in a quoted symbol (the config writes ``'h:compute-1'``,
    ``show protocols`` shows ``h:compute-1``), at most 64 characters: a longer
    one is cut and ends in ``::`` and 32 hex digits (128 bits) of SHA-256 over
    the whole ``role:name``, so no two names can be made to collide (a
    birthday search needs ~2^64 hashes). An uncut symbol never holds ``::``
    (a name's parts are not empty), so a cut one cannot equal an uncut one.
    """
    if role not in SESSION_ROLES:
        raise ValueError(f"unknown session role {role!r}: use one of {', '.join(SESSION_ROLES)}")
    if not isinstance(name, str) or not _SESSION_NAME.fullmatch(name):
        raise ValueError(
            f"peer name {name!r} is not a session name: letters, digits, '.', '_', '-',"
            " parts joined by single ':'"
        )
    symbol = f"{role}:{name}"
    if len(symbol) > _MAX_SYMBOL:
        digest = hashlib.sha256(symbol.encode()).hexdigest()[:_DIGEST_HEX]
        symbol = f"{symbol[: _MAX_SYMBOL - _DIGEST_HEX - 2]}::{digest}"
    return symbol


@dataclass(frozen=True)
class BgpPeer:
    """One BGP session. The address family of ``address`` decides the channel (ipv4/ipv6)."""

    name: str
    address: Address
    asn: int
    # With the name, the session's protocol name (protocol_name): "p", a peer named as such.
    role: SessionRole = "p"
    bfd: bool = False
    passive: bool = False
    multihop: int | None = None  # TTL; None: directly connected
    password: str | None = None
    # Routes accepted before BIRD restarts the session ("import limit N action
    # restart"); with keep_filtered also routes received ("receive limit").
    import_limit: int | None = None
    # Keep the routes the import filter refuses, marked filtered (never used
    # or exported): ``show protocols`` then counts them per channel. Also keeps
    # every route as received ("import table"): a changed filter or ROA table
    # is applied to those at once, with no route refresh from the peer.
    keep_filtered: bool = False
    source_address: Address | None = None
    import_policy: Policy = Policy("all")
    export_policy: Policy = Policy("endpoints")
    next_hop_self: bool = False
    rr_client: bool = False

    def __post_init__(self) -> None:
        address = require_address(self.address, f"peer {self.name} address")
        if self.source_address is not None:
            source = require_address(self.source_address, f"peer {self.name} source address")
            # bird -p accepts a mixed pair; the session then never connects.
            if source.version != address.version:
                raise ValueError(
                    f"peer {self.name}: local address {self.source_address} is not of the"
                    f" family of {self.address}"
                )
        _check_asn(self.asn, f"peer {self.name} AS")
        protocol_name(self.role, self.name)  # ValueError for a name BIRD cannot take
        if self.password is not None:
            _check_text(f"peer {self.name} password", self.password)
        if self.multihop is not None and not 1 <= self.multihop <= 255:
            raise ValueError(f"peer {self.name}: multihop must be a TTL 1..255")
        if self.import_limit is not None and self.import_limit < 1:
            raise ValueError(f"peer {self.name}: import limit must be at least 1")

    @property
    def protocol(self) -> str:
        """The BIRD protocol name (``h:compute-1``); the config quotes it: ``'h:compute-1'``."""
        return protocol_name(self.role, self.name)

    @property
    def version(self) -> int:
        return self.address.version

    def is_multihop(self, local_as: int) -> bool:
        """Whether BIRD runs this session multihop: asked to, or iBGP (BIRD's default for it)."""
        return self.multihop is not None or self.asn == local_as

    def needs_local(self, local_as: int) -> bool:
        """Whether BIRD rejects this session without a local address (multihop BGP with BFD)."""
        return self.bfd and self.is_multihop(local_as)


@dataclass(frozen=True)
class SkippedPeer:
    """A session left out of the config because BIRD cannot run it, and why."""

    name: str
    address: Address
    reason: str
    role: SessionRole

    def __post_init__(self) -> None:
        require_address(self.address, f"skipped peer {self.name} address")
        protocol_name(self.role, self.name)
        _check_text(f"skipped peer {self.name}", self.reason)

    @property
    def protocol(self) -> str:
        """The name the session would have in BIRD (heartbeats report it under that name)."""
        return protocol_name(self.role, self.name)


def local_address(peer: Address, candidates: Iterable[Address]) -> Address | None:
    """The candidate of ``peer``'s family that shares the longest prefix with it, or None.

    A gateway with one fabric address per link thus speaks to each peer from
    the address on that peer's link (the one next-hop-self announces, which
    the peer reaches directly).
    """
    same = [c for c in candidates if c.version == peer.version]
    if not same:
        return None
    # Fewest differing high bits = longest common prefix; ties: the first listed.
    return min(same, key=lambda c: (int(c) ^ int(peer)).bit_length())


def place_sessions(
    peers: Iterable[BgpPeer], local_as: int, candidates: Iterable[Address]
) -> tuple[list[BgpPeer], list[SkippedPeer]]:
    """Give each session that BIRD cannot run without one a local address from ``candidates``.

    A peer with a local address keeps it; one that needs one (multihop with
    BFD) gets the closest candidate of its family (``local_address``). A
    session with none of its family cannot be rendered: it is skipped, with
    the reason, instead of a config BIRD rejects as a whole.
    """
    addresses = tuple(candidates)
    placed: list[BgpPeer] = []
    skipped: list[SkippedPeer] = []
    for peer in peers:
        if peer.source_address is None and peer.needs_local(local_as):
            local = local_address(peer.address, addresses)
            if local is None:
                family = f"IPv{peer.version}"
                reason = (
                    f"multihop BGP with BFD needs a local {family} address and there is none"
                    f" (have: {', '.join(map(str, addresses)) or 'none'})"
                )
                skipped.append(SkippedPeer(peer.name, peer.address, reason, peer.role))
                continue
            peer = replace(peer, source_address=local)
        placed.append(peer)
    return placed, skipped


@dataclass(frozen=True)
class StaticRoute:
    """A route BIRD originates: via a next hop, or a blackhole/unreachable (an aggregate).

    ``unreachable`` answers with ICMP unreachable where ``blackhole`` is
    silent. ``preference`` (BIRD's default for static routes: 200) decides
    against the same prefix from elsewhere: a fallback default route at 50
    yields to one learned by BGP (100). ``bfd``: the route exists only while
    a BFD session to its next hop is up.
    """

    prefix: Network
    via: Address | None = None
    action: StaticAction = "blackhole"
    preference: int | None = None
    bfd: bool = False

    def __post_init__(self) -> None:
        net = require_network(self.prefix, "static route prefix")
        if self.via is not None and require_address(self.via, "next hop").version != net.version:
            raise ValueError(f"static route {self.prefix}: next hop {self.via} is another family")
        if self.action not in ("blackhole", "unreachable"):
            raise ValueError(f"static route {self.prefix}: action is blackhole or unreachable")
        if self.preference is not None and not 1 <= self.preference <= 65535:
            raise ValueError(f"static route {self.prefix}: preference must be 1..65535")
        if self.bfd and self.via is None:
            raise ValueError(f"static route {self.prefix}: BFD needs a next hop")

    @property
    def target(self) -> str:
        if self.via is None:
            return self.action
        return f"via {self.via}" + (" bfd" if self.bfd else "")

    @property
    def version(self) -> int:
        return self.prefix.version


@dataclass(frozen=True)
class AnycastRoute:
    """An anycast address this host serves, announced with its healthy local member count."""

    prefix: Network
    healthy: int

    def __post_init__(self) -> None:
        net = require_network(self.prefix, "anycast route prefix")
        if net.prefixlen != net.max_prefixlen:
            raise ValueError(f"anycast route {self.prefix}: must be a /32 or /128")
        anycast_marker.community(self.healthy)  # ValueError below 1

    @property
    def version(self) -> int:
        return self.prefix.version

    @property
    def community(self) -> str:
        return "({}, {}, {})".format(*anycast_marker.community(self.healthy))


@dataclass(frozen=True)
class Roa:
    """An origin authorisation: ``prefix`` (up to ``max_len``) may be originated by AS ``asn``."""

    prefix: Network
    asn: int
    max_len: int | None = None  # None: the prefix's own length

    def __post_init__(self) -> None:
        net = require_network(self.prefix, "ROA prefix")
        _check_asn(self.asn, f"ROA {self.prefix} AS")
        if self.max_len is not None and not net.prefixlen <= self.max_len <= net.max_prefixlen:
            raise ValueError(f"ROA {self.prefix}: max length {self.max_len} out of range")

    @property
    def version(self) -> int:
        return self.prefix.version

    @cached_property  # the gateway's passes reuse their Roas (gateway/bird.py _roa)
    def text(self) -> str:
        """The static roa route: ``10.1.0.5/32 max 32 as 4200000101``."""
        length = self.prefix.prefixlen if self.max_len is None else self.max_len
        return f"{self.prefix} max {length} as {self.asn}"


@dataclass(frozen=True)
class BirdConfig:
    """Everything one BIRD instance needs."""

    router_id: ipaddress.IPv4Address
    local_as: int
    peers: tuple[BgpPeer, ...] = ()
    static_routes: tuple[StaticRoute, ...] = ()
    anycast_routes: tuple[AnycastRoute, ...] = ()
    # The kernel table the host's endpoint announcements are learned from
    # (None: no endpoints, a plain router).
    endpoints_table: int | None = None
    # How often BIRD re-reads that table: it repairs a notification BIRD missed.
    # Not every 2 s: a re-read of 10,000 blackholes is ~0.3 s of BIRD's CPU
    # (17 % of a core at idle), and an announcement that comes meanwhile waits.
    endpoints_scan_time: int = 10
    bfd_interval_ms: int = 100
    bfd_multiplier: int = 3
    graceful_restart: bool = True
    graceful_restart_time: int = 120
    hold_time: int = 9
    keepalive_time: int = 3
    scan_time: int = 10
    families: tuple[int, ...] = field(default=(4, 6))
    # Announce the addresses on lo (a router's loopback) through protocol direct.
    announce_loopback: bool = False
    # Retry a session seconds after a failure instead of BIRD's minutes: for
    # routers whose peers start a moment later (a lab, a gateway restart).
    fast_connect: bool = False
    # With fast_connect: seconds from BIRD's start to its first connection
    # attempt. A host uses 0: its BIRD starts when the agent has something to
    # announce, and every second of delay is a second its routes are missing.
    connect_delay_time: int = 1
    log_file: str | None = None
    # Sessions left out because BIRD cannot run them (rendered as comments).
    skipped_peers: tuple[SkippedPeer, ...] = ()
    # Origin validation: the ROA tables roas4/roas6 (for "origin" policies), filled with these.
    roas: tuple[Roa, ...] = ()
    # Routes via a neighbour that only exist while BFD says it is alive, kept
    # out of master (never in the main table, never announced) and exported to
    # kernel table ``peer_table`` alone: an ip rule or an nft ``fib`` lookup asks
    # it whether the neighbour is alive (a gateway pair's reply steering).
    peer_routes: tuple[StaticRoute, ...] = ()
    peer_table: int | None = None

    def __post_init__(self) -> None:
        require_address(self.router_id, "router id", version=4)
        _check_asn(self.local_as, "local AS")
        names = [p.protocol for p in self.peers]
        if len(set(names)) != len(names):
            raise ValueError(f"peer names collide as BIRD protocols: {sorted(names)}")
        for peer in self.peers:
            if peer.needs_local(self.local_as) and peer.source_address is None:
                raise ValueError(
                    f"peer {peer.name}: multihop BGP with BFD (iBGP is multihop) needs a"
                    " local address"
                )
        if not 1 <= self.bfd_multiplier <= 255 or self.bfd_interval_ms < 1:
            raise ValueError("BFD interval must be >= 1 ms and multiplier 1..255")
        if self.hold_time and not 3 <= self.hold_time <= 65535:
            raise ValueError("hold time must be 0 or 3..65535 s")
        if self.keepalive_time < 1 or (self.hold_time and self.keepalive_time > self.hold_time):
            raise ValueError("keepalive time must be >= 1 s and not above the hold time")
        if not 0 <= self.connect_delay_time <= 65535:
            raise ValueError("connect delay time must be 0..65535 s")
        if not set(self.families) <= {4, 6}:
            raise ValueError("families are 4 and/or 6")
        if self.log_file is not None:
            _check_text("log file", self.log_file)
        prefixes = [r.prefix for r in self.anycast_routes]
        if len(set(prefixes)) != len(prefixes):
            raise ValueError("an anycast prefix is announced twice")
        for what, table in (("endpoints", self.endpoints_table), ("peer", self.peer_table)):
            # 253-255 are the kernel's default, main and local tables.
            if table is not None and not 1 <= table <= 252:
                raise ValueError(f"the {what} table must be a kernel table id 1..252")
        if self.peer_routes and self.peer_table is None:
            raise ValueError("peer routes need a kernel table (peer_table)")

    def needs_bfd(self) -> bool:
        """Whether a session or a route asks for BFD (then ``protocol bfd`` is rendered)."""
        return any(p.bfd for p in self.peers) or any(r.bfd for r in self.peer_routes)

    def peer_route_groups(self) -> list[tuple[int, list[StaticRoute]]]:
        """The peer routes per IP version: (version, routes)."""
        return [
            (v, [r for r in self.peer_routes if r.version == v])
            for v in self.families
            if any(r.version == v for r in self.peer_routes)
        ]

    @staticmethod
    def anycast_protocol(version: int) -> str:
        return f"{ANYCAST_PROTOCOL}{version}"

    @staticmethod
    def endpoints_protocol(version: int) -> str:
        return f"{ENDPOINTS_PROTOCOL}{version}"

    def endpoint_versions(self) -> list[int]:
        """The IP versions whose endpoints are learned from ``endpoints_table``."""
        return list(self.families) if self.endpoints_table is not None else []

    def anycast_groups(self) -> list[tuple[str, int, list[AnycastRoute]]]:
        """Anycast announcements per family: (protocol name, version, routes)."""
        return [
            (self.anycast_protocol(v), v, [r for r in self.anycast_routes if r.version == v])
            for v in self.families
            if any(r.version == v for r in self.anycast_routes)
        ]

    def roa_versions(self) -> list[int]:
        """The IP versions that need a ROA table: a peer of theirs has an ``origin`` policy."""
        return [
            v
            for v in self.families
            if any(p.version == v and p.import_policy.kind == "origin" for p in self.peers)
        ]

    def roa_groups(self) -> list[tuple[int, list[Roa]]]:
        """The ROA entries per version with a table: (version, sorted entries)."""
        return [
            (v, sorted((r for r in self.roas if r.version == v), key=lambda r: r.text))
            for v in self.roa_versions()
        ]

    def multihop_versions(self) -> list[int]:
        """The IP versions with a multihop session: their next hops resolve via ``nexthops<v>``."""
        return [
            v
            for v in self.families
            if any(p.version == v and p.is_multihop(self.local_as) for p in self.peers)
        ]

    def static_groups(self) -> list[tuple[str, int, int | None, list[StaticRoute]]]:
        """Static routes grouped into protocols: (name, version, preference, routes).

        Preference is an option of a channel, so each preference gets its own
        protocol (``static4``, ``static4_p50``).
        """
        groups: dict[tuple[int, int | None], list[StaticRoute]] = {}
        for route in self.static_routes:
            groups.setdefault((route.version, route.preference), []).append(route)
        return [
            (f"static{v}" + (f"_p{pref}" if pref is not None else ""), v, pref, routes)
            for (v, pref), routes in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1] or 0))
        ]


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("l3fabric.routing", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(config: BirdConfig) -> str:
    """The bird.conf text for ``config``."""
    return _environment().get_template("bird.conf.j2").render(c=config)
