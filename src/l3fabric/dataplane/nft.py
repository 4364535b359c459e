"""Anti-spoofing with nftables: one table of ours, replaced in one atomic transaction.

The desired state is ``{tap: allowed source prefixes}`` (a port's fixed IPs as
/32 or /128 and its ``allowed_address_pairs``, which may be CIDRs). It renders
to one ``table inet l3fabric`` whose prerouting chain (priority raw: before
conntrack and routing, so it guards forwarded traffic and traffic to the host
alike) drops every packet that enters from an interface named ``tap*`` with a
source not allowed for that tap. One set per family, keyed by the
concatenation ``iifname . saddr`` with interval flags, serves all taps with a
single rule. ARP is not IP and passes; IPv6 link-local sources pass so that
neighbour discovery works (the kernel never forwards them).

Interfaces named in ``isolated`` (the host's management link, through which
it reaches the controller) get a forward chain that drops everything coming
from a tap: VMs must never reach the management network through their host.

The table carries a comment with a digest of its rendering, so an unchanged
state costs no transaction, also across an agent restart.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
import subprocess
from collections.abc import Iterable, Mapping

from l3fabric.addresses import Network, parse_network, require_network
from l3fabric.dataplane import netns as netns_mod

FAMILY = "inet"
TABLE = "l3fabric"
TAP_GLOB = "tap*"
_IFNAME = re.compile(r"^tap[A-Za-z0-9_-]{1,12}$")
_ANY_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_DIGEST = re.compile(r'comment "l3fabric sha256:([0-9a-f]{64})"')
_TIMEOUT_S = 30


class NftError(RuntimeError):
    """nft refused the ruleset; the message is nft's own."""


def _ipv4_host(prefix: str) -> str | None:
    """``prefix`` if it is a canonical IPv4 host prefix (``10.0.0.5/32``), else None."""
    address, _, length = prefix.partition("/")
    if length != "32" or ":" in address:
        return None
    try:
        # The C parser refuses what ipaddress refuses (short forms, leading
        # zeros), so an accepted text is already what ipaddress would print.
        socket.inet_pton(socket.AF_INET, address)
    except OSError:
        return None
    return prefix


def _source(prefix: str | Network, tap: str) -> Network:
    """An allowed source as a network: typed, or text parsed strictly (never a zone ID)."""
    try:
        if isinstance(prefix, str):
            return parse_network(prefix, strict=False, what="allowed source")
        return require_network(prefix, "allowed source")
    except ValueError as exc:
        raise ValueError(f"bad allowed source for {tap}: {exc}") from None


def _normalise(allowed: Mapping[str, Iterable[str | Network]]) -> dict[str, dict[int, list[str]]]:
    """Validated, sorted and overlap-free prefixes per tap and IP version."""
    result: dict[str, dict[int, list[str]]] = {}
    for tap in sorted(allowed):
        if not _IFNAME.match(tap):
            raise ValueError(f"bad tap name {tap!r}: must match tap* and fit 15 characters")
        prefixes = list(allowed[tap])
        first = prefixes[0] if len(prefixes) == 1 else None
        if isinstance(first, str) and (host := _ipv4_host(first)):
            # Most taps: one fixed IPv4 address. Nothing to merge, and no
            # ipaddress objects (~20 us a tap, 0.2 s of a 10,000-tap pass).
            result[tap] = {4: [host], 6: []}
            continue
        by_version: dict[int, list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {4: [], 6: []}
        for prefix in prefixes:
            net = _source(prefix, tap)
            by_version[net.version].append(net)
        # Interval sets refuse overlapping elements (a fixed IP inside an
        # allowed CIDR is common), so merge them first.
        result[tap] = {
            version: [str(n) for n in ipaddress.collapse_addresses(nets)]
            for version, nets in by_version.items()
        }
    return result


def _set(name: str, addr_type: str, elements: list[str]) -> list[str]:
    lines = [
        f"\tset {name} {{",
        f"\t\ttype ifname . {addr_type}",
        "\t\tflags interval",
    ]
    if elements:
        lines.append("\t\telements = {\n\t\t\t" + ",\n\t\t\t".join(elements) + "\n\t\t}")
    lines.append("\t}")
    return lines


def _isolation(isolated: Iterable[str]) -> list[str]:
    names = sorted(set(isolated))
    for name in names:
        if not _ANY_IFNAME.match(name):
            raise ValueError(f"bad interface name {name!r} to isolate from the VMs")
    if not names:
        return []
    quoted = ", ".join(f'"{n}"' for n in names)
    return [
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy accept;",
        f'\t\tiifname "{TAP_GLOB}" oifname {{ {quoted} }} counter drop',
        "\t}",
    ]


def render(allowed: Mapping[str, Iterable[str | Network]], isolated: Iterable[str] = ()) -> str:
    """The whole table for ``{tap: [prefix, ...]}``, including its digest comment.

    ``isolated``: interfaces no packet from a tap may be forwarded to.
    """
    state = _normalise(allowed)
    v4 = [f'"{tap}" . {p}' for tap, fam in state.items() for p in fam[4]]
    v6 = [f'"{tap}" . {p}' for tap, fam in state.items() for p in fam[6]]
    body = [
        *_set("allowed4", "ipv4_addr", v4),
        *_set("allowed6", "ipv6_addr", v6),
        "\tchain prerouting {",
        "\t\ttype filter hook prerouting priority raw; policy accept;",
        f'\t\tiifname != "{TAP_GLOB}" accept',
        "\t\tiifname . ip saddr @allowed4 accept",
        "\t\tiifname . ip6 saddr @allowed6 accept",
        # Neighbour discovery: link-local sources, and DAD / MLD from "::".
        "\t\tip6 saddr fe80::/10 accept",
        "\t\tip6 saddr :: icmpv6 type { nd-neighbor-solicit, mld2-listener-report } accept",
        "\t\tcounter drop",
        "\t}",
        *_isolation(isolated),
    ]
    return table_with_digest(FAMILY, TABLE, body)


def table_with_digest(family: str, table: str, body: list[str]) -> str:
    """Table ``family table`` with ``body`` lines, commented with the digest of its rendering."""
    text = "\n".join(body)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f'table {family} {table} {{\n\tcomment "l3fabric sha256:{digest}"\n{text}\n}}\n'


def digest_of(ruleset: str) -> str | None:
    """The digest recorded in a rendered or listed table, if any."""
    match = _DIGEST.search(ruleset)
    return match.group(1) if match else None


class NftTable:
    """One nftables table of ours in namespace ``netns`` (None: the current one).

    ``apply_ruleset`` replaces the whole table in one ``nft -f`` transaction,
    and only when the digest in the kernel's table differs from the new one,
    so an unchanged state costs nothing, also across an agent restart.
    """

    def __init__(self, family: str, table: str, netns: str | None = None) -> None:
        self.family = family
        self.table = table
        self.netns = netns
        self._applied: str | None = None
        self._known = False

    def _nft(self, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            netns_mod.command(self.netns, ["nft", *args]),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
        )

    def applied_digest(self) -> str | None:
        """The digest of the table in the kernel, None if there is none (or it is foreign)."""
        done = self._nft(["list", "table", self.family, self.table])
        if done.returncode != 0:
            return None
        return digest_of(done.stdout)

    def apply_ruleset(self, ruleset: str, force: bool = False) -> bool:
        """Make ``ruleset`` (a rendered table) ours; True if a transaction ran."""
        digest = digest_of(ruleset)
        if not self._known:
            self._applied = self.applied_digest()
            self._known = True
        if digest == self._applied and not force:
            return False
        # Declaring the table first makes the delete valid when it does not
        # exist yet; nft -f applies the whole file as one transaction.
        head = f"table {self.family} {self.table}\ndelete table {self.family} {self.table}\n"
        done = self._nft(["-f", "-"], stdin=head + ruleset)
        if done.returncode != 0:
            # The kernel state is unchanged, but be sure to re-read it next time.
            self._known = False
            raise NftError(f"nft rejected table {self.table}: {done.stderr.strip()}")
        self._applied = digest
        return True

    def forget(self) -> None:
        """Read the kernel's table again at the next ``apply`` (repairs changes made by hand)."""
        self._known = False

    def remove(self) -> None:
        """Delete our table (nothing else) if it exists."""
        done = self._nft(["delete", "table", self.family, self.table])
        if done.returncode != 0 and "No such file" not in done.stderr:
            raise NftError(
                f"nft could not delete table {self.family} {self.table}: {done.stderr.strip()}"
            )
        self._applied = None
        self._known = True


class AntiSpoofing(NftTable):
    """The anti-spoofing table in namespace ``netns`` (None: the current one)."""

    def __init__(self, netns: str | None = None) -> None:
        super().__init__(FAMILY, TABLE, netns)

    def apply(
        self,
        allowed: Mapping[str, Iterable[str]],
        force: bool = False,
        isolated: Iterable[str] = (),
    ) -> bool:
        """Converge the table to ``allowed``; True if a transaction ran, False if it was equal."""
        return self.apply_ruleset(render(allowed, isolated), force=force)
