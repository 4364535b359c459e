"""Anti-spoofing with nftables: one table of ours, replaced in one atomic transaction.

The desired state is ``{tap: allowed source prefixes}`` (a port's fixed IPs as
/32 or /128 and its ``allowed_address_pairs``, which may be CIDRs). It renders
to one ``table inet l3fabric`` whose prerouting chain (priority raw: before
conntrack and routing, so it guards forwarded traffic and traffic to the host
alike) drops every packet that enters from an interface named ``tap*`` with a
source not allowed for that tap. Two sets per family, keyed by the
concatenation ``iifname . saddr``, serve all taps with one rule each: a hash
set (``allowed4``, ``allowed6``) for host addresses, a port's fixed IPs (the
common case), and an interval set (``allowed4net``, ``allowed6net``) for
prefixes (``allowed_address_pairs`` with a CIDR). The split keeps a port's
change O(1): the kernel checks every element of an interval set for overlap
at each commit (one element into 10,000: ~1.4-4 ms in ``sendmsg``, 0.02 ms
into a hash set; docs/benchmarks.md). ARP is not IP and passes; IPv6
link-local sources pass so that neighbour discovery works (the kernel never
forwards them).

Interfaces named in ``isolated`` (the host's management link, through which
it reaches the controller) get a forward chain that drops everything coming
from a tap: VMs must never reach the management network through their host.

The table's last rule carries a digest of its skeleton (sets and rules,
without elements). ``AntiSpoofing.listing()`` reads the table back (``nft -j``:
~50 ms at 10,000 elements); a skeleton that differs (another digest, a rule
deleted by hand) is replaced whole, elements that differ are deleted and added
in one small transaction (one port: 0.2-0.3 ms in process), and an equal table costs nothing,
also across an agent restart. The digest alone is not enough: a rule or
element deleted by hand leaves it as it was.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from l3fabric.addresses import Network, host_prefix_version, parse_network, require_network
from l3fabric.dataplane import ifnames
from l3fabric.dataplane.nft_exec import NftResult, NftRunner

FAMILY = "inet"
TABLE = "l3fabric"
TAP_GLOB = "tap*"
_DIGEST = re.compile(r'comment "l3fabric sha256:([0-9a-f]{64})"')


class NftError(RuntimeError):
    """nft refused the ruleset; the message is nft's own."""


def _source(prefix: str | Network, tap: str) -> Network:
    """An allowed source as a network: typed, or text parsed strictly (never a zone ID)."""
    try:
        if isinstance(prefix, str):
            return parse_network(prefix, strict=False, what="allowed source")
        return require_network(prefix, "allowed source")
    except ValueError as exc:
        raise ValueError(f"bad allowed source for {tap}: {exc}") from None


def normalise_sources(tap: str, prefixes: Iterable[str | Network]) -> tuple[str, ...]:
    """``tap``'s allowed sources as set elements: validated, merged, IPv4 first, sorted.

    ValueError names a bad tap name or prefix.
    """
    if not ifnames.is_tap(tap):
        raise ValueError(f"bad tap name {tap!r}: must match tap* and fit 15 characters")
    prefixes = list(prefixes)
    if (
        len(prefixes) == 1
        and isinstance(prefixes[0], str)
        and host_prefix_version(prefixes[0]) == 4
    ):
        # Most taps: one fixed IPv4 address. Nothing to merge, and no
        # ipaddress objects (~20 us a tap, 0.2 s of a 10,000-tap pass).
        return (prefixes[0],)
    by_version: dict[int, list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {4: [], 6: []}
    for prefix in prefixes:
        net = _source(prefix, tap)
        by_version[net.version].append(net)
    # Interval sets refuse overlapping elements, and a fixed IP inside an
    # allowed CIDR is common: merged, it is one element (the CIDR's).
    return tuple(str(n) for v in (4, 6) for n in ipaddress.collapse_addresses(by_version[v]))


def _normalise(allowed: Mapping[str, Iterable[str | Network]]) -> dict[str, tuple[str, ...]]:
    """Validated, merged prefixes per tap (sorted by tap)."""
    return {tap: normalise_sources(tap, allowed[tap]) for tap in sorted(allowed)}


# Set name -> (address type, interval flag); ``_set_of`` says which holds an element.
SETS: dict[str, tuple[str, bool]] = {
    "allowed4": ("ipv4_addr", False),
    "allowed4net": ("ipv4_addr", True),
    "allowed6": ("ipv6_addr", False),
    "allowed6net": ("ipv6_addr", True),
}


def _set_of(prefix: str) -> str:
    """The set of an allowed source (normalised text): host addresses hashed, prefixes not."""
    if ":" in prefix:
        return "allowed6" if prefix.endswith("/128") else "allowed6net"
    return "allowed4" if prefix.endswith("/32") else "allowed4net"


def _element(tap: str, prefix: str) -> str:
    # A hash set takes the bare address (a /32 would need the interval flag).
    address, _, length = prefix.partition("/")
    value = address if length in ("32", "128") else prefix
    return f'"{tap}" . {value}'


def _by_set(items: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """(tap, prefix) elements rendered and grouped by their set, in ``SETS`` order."""
    found: dict[str, list[str]] = {name: [] for name in SETS}
    for tap, prefix in items:
        found[_set_of(prefix)].append(_element(tap, prefix))
    return found


def _set(name: str, elements: list[str]) -> list[str]:
    addr_type, interval = SETS[name]
    lines = [f"\tset {name} {{", f"\t\ttype ifname . {addr_type}"]
    if interval:
        lines.append("\t\tflags interval")
    if elements:
        lines.append("\t\telements = {\n\t\t\t" + ",\n\t\t\t".join(elements) + "\n\t\t}")
    lines.append("\t}")
    return lines


def _isolation(isolated: Iterable[str]) -> list[str]:
    names = sorted(set(isolated))
    for name in names:
        if not ifnames.ruleset_safe(name):
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


def _skeleton(isolated: Iterable[str], elements: Mapping[str, list[str]]) -> list[str]:
    return [
        *(line for name in SETS for line in _set(name, elements.get(name, []))),
        "\tchain prerouting {",
        "\t\ttype filter hook prerouting priority raw; policy accept;",
        *(f"\t\t{rule}" for rule in PREROUTING_RULES),
        "\t}",
        *_isolation(isolated),
    ]


PREROUTING_RULES = (
    # The first rule carries the digest of the table without its elements.
    f'iifname != "{TAP_GLOB}" accept',
    "iifname . ip saddr @allowed4 accept",
    "iifname . ip saddr @allowed4net accept",
    "iifname . ip6 saddr @allowed6 accept",
    "iifname . ip6 saddr @allowed6net accept",
    # DHCP before the VM has an address (DISCOVER, REQUEST): to the host only
    # (a limited broadcast is never forwarded), answered by its dnsmasq.
    "ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp dport 67 accept",
    # Neighbour discovery: link-local sources, and DAD / MLD from "::".
    "ip6 saddr fe80::/10 accept",
    "ip6 saddr :: icmpv6 type { nd-neighbor-solicit, mld2-listener-report } accept",
    "counter drop",
)


def skeleton_digest(isolated: Iterable[str] = ()) -> str:
    """The digest of the table's sets and rules for ``isolated``, elements left out."""
    return hashlib.sha256("\n".join(_skeleton(isolated, {})).encode()).hexdigest()


def expected_rules(isolated: Iterable[str] = ()) -> dict[str, int]:
    """How many rules each chain of ours has: a rule deleted by hand shows here."""
    return {"prerouting": len(PREROUTING_RULES), **({"forward": 1} if set(isolated) else {})}


def render(allowed: Mapping[str, Iterable[str | Network]], isolated: Iterable[str] = ()) -> str:
    """The whole table for ``{tap: [prefix, ...]}``; its drop rule carries the skeleton digest.

    ``isolated``: interfaces no packet from a tap may be forwarded to.
    """
    state = _normalise(allowed)
    body = _skeleton(isolated, _by_set((tap, p) for tap, ps in state.items() for p in ps))
    first = f"\t\t{PREROUTING_RULES[0]}"
    body[body.index(first)] = f'{first} comment "l3fabric sha256:{skeleton_digest(isolated)}"'
    return f"table {FAMILY} {TABLE} {{\n" + "\n".join(body) + "\n}\n"


def elements_script(add: Iterable[tuple[str, str]], delete: Iterable[tuple[str, str]]) -> str:
    """One ``nft -f`` transaction: delete, then add (tap, prefix) elements of our sets."""
    lines: list[str] = []
    for verb, items in (("delete", delete), ("add", add)):
        for name, elements in _by_set(items).items():
            if elements:
                lines.append(f"{verb} element {FAMILY} {TABLE} {name} {{ {', '.join(elements)} }}")
    return "\n".join(lines) + "\n"


def element_changes(
    current: Mapping[str, frozenset[str]], desired: Mapping[str, Iterable[str]]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(add, delete) that turn the elements ``current`` into ``desired`` (tap -> prefixes)."""
    add: list[tuple[str, str]] = []
    delete: list[tuple[str, str]] = []
    for tap, prefixes in desired.items():
        have = current.get(tap, frozenset())
        want = frozenset(prefixes)
        if have != want:
            add += [(tap, p) for p in sorted(want - have)]
            delete += [(tap, p) for p in sorted(have - want)]
    for tap in current.keys() - desired.keys():
        delete += [(tap, p) for p in sorted(current[tap])]
    return add, delete


@dataclass(frozen=True)
class Listing:
    """What the kernel's table of ours holds: skeleton digest, rules per chain, elements per tap."""

    digest: str | None
    rules: dict[str, int]
    elements: Mapping[str, frozenset[str]]


def _json_prefix(value: object) -> str:
    if isinstance(value, str):
        return f"{value}/{128 if ':' in value else 32}"
    if isinstance(value, dict) and "prefix" in value:
        return f"{value['prefix']['addr']}/{value['prefix']['len']}"
    return json.dumps(value)  # a range: never ours, so it differs from every wanted element


def parse_listing(text: str) -> Listing:
    """``nft -j list table`` output -> Listing."""
    digest: str | None = None
    rules: dict[str, int] = {}
    elements: dict[str, set[str]] = {}
    for item in json.loads(text).get("nftables", []):
        if "rule" in item:
            rule = item["rule"]
            rules[rule["chain"]] = rules.get(rule["chain"], 0) + 1
            match = _DIGEST.search(f'comment "{rule.get("comment", "")}"')
            digest = match.group(1) if match else digest
        elif "set" in item:
            for elem in item["set"].get("elem", []):
                if isinstance(elem, dict) and "elem" in elem:
                    elem = elem["elem"].get("val", elem)  # an element with a comment or counter
                tap, prefix = elem["concat"]
                elements.setdefault(tap, set()).add(_json_prefix(prefix))
    return Listing(digest, rules, {t: frozenset(p) for t, p in elements.items()})


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
        self._runner = NftRunner(netns)  # in process (libnftables) where it can
        self._applied: str | None = None
        self._known = False

    def _nft(self, args: list[str], stdin: str | None = None) -> NftResult:
        return self._runner.run(args, stdin)

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
    """The anti-spoofing table in namespace ``netns`` (None: the current one).

    Compared by content, not by a digest alone: ``listing()`` reads the
    elements and rules, so an element or rule deleted by hand is put back.
    """

    def __init__(self, netns: str | None = None) -> None:
        super().__init__(FAMILY, TABLE, netns)

    def listing(self) -> Listing | None:
        """The kernel's table (``nft -j``), None if there is none."""
        done = self._nft(["-j", "list", "table", self.family, self.table])
        if done.returncode != 0:
            return None
        return parse_listing(done.stdout)

    def apply_table(
        self, allowed: Mapping[str, Iterable[str]], isolated: Iterable[str] = ()
    ) -> None:
        """Replace the whole table in one transaction."""
        self.apply_ruleset(render(allowed, isolated), force=True)

    def apply_elements(
        self, add: Iterable[tuple[str, str]], delete: Iterable[tuple[str, str]]
    ) -> None:
        """Delete, then add set elements (tap, prefix), in one transaction."""
        done = self._nft(["-f", "-"], stdin=elements_script(add, delete))
        if done.returncode != 0:
            raise NftError(f"nft rejected the element changes: {done.stderr.strip()}")

    def apply(
        self,
        allowed: Mapping[str, Iterable[str]],
        force: bool = False,
        isolated: Iterable[str] = (),
    ) -> bool:
        """Converge the table to ``allowed``; True if a transaction ran, False if it was equal."""
        state = _normalise(allowed)
        found = None if force else self.listing()
        if (
            found is None
            or found.digest != skeleton_digest(isolated)
            or found.rules != expected_rules(isolated)
        ):
            self.apply_table(state, isolated)
            return True
        add, delete = element_changes(found.elements, state)
        if add or delete:
            self.apply_elements(add, delete)
        return bool(add or delete)
