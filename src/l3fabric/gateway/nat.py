"""The gateway's nftables table: source NAT for private subnets, and the inbound shield.

One ``table inet l3fabric_gw``, replaced in one atomic transaction through
the same digest-guarded mechanism as the hosts' anti-spoofing table
(``dataplane.nft.NftTable``): an unchanged policy runs no transaction at all.

- postrouting (srcnat): packets from a private range leaving through an
  upstream interface are source-NATed to ``snat`` (the gateway's upstream
  address) or masqueraded. Public ranges are never NATed.
- forward: conntrack established/related passes first (replies to NATed
  flows, un-NATed by conntrack, and flows that were already running); then
  anything arriving from upstream for a private range is dropped. Without
  this drop the internet could reach a private VM, because the gateway
  learns every /32 by BGP.

Established flows survive a rule change: their NAT binding lives in the
conntrack entry, which a table replacement does not touch, and the forward
chain accepts them by conntrack state before any address rule.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from l3fabric.addresses import Address, Network, require_address, require_network
from l3fabric.dataplane import ifnames
from l3fabric.dataplane import netns as netns_mod
from l3fabric.dataplane.nft import NftTable, digest_of, table_with_digest

FAMILY = "inet"
TABLE = "l3fabric_gw"
_TIMEOUT_S = 10


@dataclass(frozen=True)
class NatPolicy:
    """What the NAT table enforces."""

    private: tuple[Network, ...]  # source prefixes to NAT / destinations to shield
    upstream_interfaces: tuple[str, ...]
    snat4: ipaddress.IPv4Address | None = None  # None: masquerade
    snat6: ipaddress.IPv6Address | None = None

    def __post_init__(self) -> None:
        for name in self.upstream_interfaces:
            if not ifnames.ruleset_safe(name):
                raise ValueError(f"bad upstream interface name {name!r}")
        for prefix in self.private:
            require_network(prefix, "private prefix")
        for address, version in ((self.snat4, 4), (self.snat6, 6)):
            if address is not None:
                require_address(address, "SNAT address", version=version)


def policy(
    private: Iterable[Network], upstream_interfaces: Iterable[str], snat_address: Address | None
) -> NatPolicy:
    """A NatPolicy with the registration's ``snat_address`` put in its family's slot."""
    snat4 = snat_address if isinstance(snat_address, ipaddress.IPv4Address) else None
    snat6 = snat_address if isinstance(snat_address, ipaddress.IPv6Address) else None
    if snat_address is not None:
        require_address(snat_address, "SNAT address")
    return NatPolicy(tuple(private), tuple(sorted(set(upstream_interfaces))), snat4, snat6)


def _elements(values: list[str]) -> str:
    return "\t\telements = { " + ", ".join(values) + " }" if values else ""


def _prefixes(p: NatPolicy, version: int) -> list[str]:
    return [str(n) for n in p.private if n.version == version]


def render(p: NatPolicy) -> str:
    """The whole table for ``p``, with its digest comment."""
    v4, v6 = _prefixes(p, 4), _prefixes(p, 6)
    ifaces = [f'"{name}"' for name in p.upstream_interfaces]
    nat4 = f"snat ip to {p.snat4}" if p.snat4 else "masquerade"
    nat6 = f"snat ip6 to {p.snat6}" if p.snat6 else "masquerade"
    sets = [
        ("upstream", "ifname", "", ifaces),
        ("private4", "ipv4_addr", "\t\tflags interval", v4),
        ("private6", "ipv6_addr", "\t\tflags interval", v6),
    ]
    body: list[str] = []
    for name, type_, flags, elements in sets:
        body += [f"\tset {name} {{", f"\t\ttype {type_}"]
        body += [line for line in (flags, _elements(elements)) if line]
        body.append("\t}")
    body += [
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy accept;",
        "\t\tct state established,related accept",
        "\t\tiifname @upstream ip daddr @private4 counter drop",
        "\t\tiifname @upstream ip6 daddr @private6 counter drop",
        "\t}",
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
        f"\t\toifname @upstream ip saddr @private4 counter {nat4}",
        f"\t\toifname @upstream ip6 saddr @private6 counter {nat6}",
        "\t}",
    ]
    return table_with_digest(FAMILY, TABLE, body)


# Rules per chain of the rendered table: a rule deleted by hand shows here.
RULES = {"forward": 3, "postrouting": 2}


@dataclass(frozen=True)
class NatListing:
    """The table by content: its digest, rules per chain and elements per set."""

    digest: str | None
    rules: Mapping[str, int] = field(default_factory=dict)
    sets: Mapping[str, frozenset[str]] = field(default_factory=dict)


def _set_element(net: Network) -> str:
    """A private prefix as ``nft -j`` lists it: a host prefix as its bare address."""
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def expected_listing(p: NatPolicy) -> NatListing:
    """What ``nft -j`` shows of the table ``render(p)`` makes."""
    return NatListing(
        digest_of(render(p)),
        RULES,
        {
            "upstream": frozenset(p.upstream_interfaces),
            "private4": frozenset(_set_element(n) for n in p.private if n.version == 4),
            "private6": frozenset(_set_element(n) for n in p.private if n.version == 6),
        },
    )


def _json_element(value: object) -> str:
    if isinstance(value, dict) and "prefix" in value:
        return f"{value['prefix']['addr']}/{value['prefix']['len']}"
    return value if isinstance(value, str) else json.dumps(value)


def parse_listing(digest: str | None, text: str) -> NatListing:
    """``nft -j list table`` output (and the digest of the text listing) -> NatListing."""
    rules: dict[str, int] = {}
    sets: dict[str, frozenset[str]] = {}
    for item in json.loads(text).get("nftables", []):
        if "rule" in item:
            chain = item["rule"]["chain"]
            rules[chain] = rules.get(chain, 0) + 1
        elif "set" in item:
            found = item["set"]
            sets[found["name"]] = frozenset(_json_element(e) for e in found.get("elem", []))
    return NatListing(digest, rules, sets)


class GatewayNat(NftTable):
    """The gateway's NAT table in namespace ``netns`` (None: the current one)."""

    def __init__(self, netns: str | None = None) -> None:
        super().__init__(FAMILY, TABLE, netns)

    def apply(self, p: NatPolicy) -> bool:
        """Converge the table to ``p``; True if a transaction ran."""
        return self.apply_ruleset(render(p))

    def replace(self, p: NatPolicy) -> None:
        """Replace the whole table with ``render(p)`` in one transaction."""
        self.apply_ruleset(render(p), force=True)

    def listing(self) -> NatListing | None:
        """The kernel's table by content, None if there is none.

        The digest comes from the text listing (``nft -j`` 1.0.6 leaves the
        table's comment out), rules and elements from the JSON one.
        """
        digest = self.applied_digest()
        done = self._nft(["-j", "list", "table", self.family, self.table])
        if done.returncode != 0:
            return None
        return parse_listing(digest, done.stdout)


def _conntrack_lines(netns: str | None, args: list[str]) -> list[str]:
    done = subprocess.run(
        netns_mod.command(netns, ["conntrack", *args]),
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise RuntimeError(f"conntrack {' '.join(args)}: {done.stderr.strip()}")
    return [line for line in done.stdout.splitlines() if line.strip()]


CONNTRACK_COUNT = "/proc/sys/net/netfilter/nf_conntrack_count"
_SRC = re.compile(r"\bsrc=(\S+)")
_DST = re.compile(r"\bdst=(\S+)")


def snat_flows(lines: Iterable[str]) -> list[tuple[str, str]]:
    """(original source, translated source) of each source-NATed ``conntrack -L`` entry.

    An entry is source-NATed when its reply goes to another address than the
    original source. (``conntrack --src-nat`` also lists entries that only
    passed the NAT hook with a null binding, so it over-counts.)
    """
    flows = []
    for line in lines:
        srcs, dsts = _SRC.findall(line), _DST.findall(line)
        if len(srcs) >= 2 and len(dsts) >= 2 and srcs[0] != dsts[1]:
            flows.append((srcs[0], dsts[1]))
    return flows


# conntrack -S's counters of flows that could not be tracked or translated.
FAILURE_COUNTERS = ("insert_failed", "drop", "early_drop", "error", "invalid")
_STAT = re.compile(r"\b(\w+)=(\d+)")


def conntrack_stats(lines: Iterable[str]) -> dict[str, int]:
    """``conntrack -S`` (a line per CPU) summed over the CPUs, failure counters only."""
    totals = dict.fromkeys(FAILURE_COUNTERS, 0)
    for line in lines:
        for name, value in _STAT.findall(line):
            if name in totals:
                totals[name] += int(value)
    return totals


def conntrack_count(netns: str | None = None) -> int:
    """Tracked flows now: the kernel's counter (no listing; /proc/sys/net is per namespace)."""
    if netns is None:
        try:
            return int(Path(CONNTRACK_COUNT).read_text())
        except FileNotFoundError:
            return 0  # conntrack not loaded: nothing is tracked
    return int(_conntrack_lines(netns, ["-C"])[0])


def nat_counters(netns: str | None = None) -> dict[str, Any]:
    """Flows now (``conntrack_entries``) and failures (``conntrack_stats``), for the heartbeat.

    Counters, not a listing: a ``conntrack -L`` every heartbeat costs CPU in
    proportion to the flows, on the box that forwards them."""
    return {
        "conntrack_entries": conntrack_count(netns),
        "conntrack_stats": conntrack_stats(_conntrack_lines(netns, ["-S"])),
    }
