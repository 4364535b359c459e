"""Endpoint taps on the host side: naming, link state, per-tap sysctls, IPv6 next hop.

A tap is created by whoever plays Nova (the lab: the host end of a veth whose
other end is in the VM's namespace); the agent only prepares it. Everything is
read before it is written, so preparing a ready tap changes nothing.

Choices (Calico style):
- ``proxy_arp=1`` with ``proxy_delay=0``: the VM's default route is via
  169.254.1.1 and the host answers ARP for it (and any other address) at once;
  see ``routes.ensure_link_local_gateway`` for the route that makes this work.
- ``rp_filter=0``: strict reverse-path filtering would drop a VM's packets
  from its ``allowed_address_pairs`` and anycast addresses (there is no route
  for them via that tap), and it does not cover IPv6. The nftables table of
  ``dataplane.nft`` is the anti-spoofing guard, for both families.
- IPv6: the tap gets the address fe80::1/64 (no DAD), so the VM's default
  route ``via fe80::1`` is answered by ordinary neighbour discovery; no proxy
  NDP needed. Router advertisements from VMs are ignored (``accept_ra=0``).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import socket
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from l3fabric.dataplane import devconf, ifnames, sysctl
from l3fabric.dataplane import netlink_batch as nlb
from l3fabric.dataplane import netns as netns_mod
from l3fabric.dataplane.netlink import (
    IFADDRMSG,
    IFINFOMSG,
    IFLA_IFNAME,
    NLMSGHDR,
    RT_SCOPE_LINK,
    RTATTR,
    RTMSG,
    U32,
    message,
)

TAP_PREFIX = "tap"
LINK_LOCAL_GATEWAY_V6 = "fe80::1"
IFF_UP = 0x1
IFA_F_NODAD = 0x02
_PORT_ID = re.compile(r"^[0-9A-Za-z-]{11,}$")
# No dots: a name becomes a /proc/sys path component and a sysctl key part.
_GATEWAY_V6 = ipaddress.IPv6Address(LINK_LOCAL_GATEWAY_V6).packed

# linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR = 16, 18, 20, 22
NLM_F_EXCL = 0x200
IFLA_EXT_MASK = 29
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFA_FLAGS = 8
_LINK_DUMP = message(NLMSGHDR, IFINFOMSG, RTATTR, U32)
_LINK_SET = message(NLMSGHDR, IFINFOMSG)
_ADDR_DUMP = message(NLMSGHDR, IFADDRMSG)
_ADDR_ADD = message(NLMSGHDR, IFADDRMSG, RTATTR, "16s", RTATTR, U32)
# The multicast route IPv6 gives every link: ff00::/8 dev <link> table local.
_DELETE_ROUTE6_DEV = message(NLMSGHDR, RTMSG, RTATTR, "16s", RTATTR, U32)
_MULTICAST6 = ipaddress.IPv6Address("ff00::").packed
RT_TABLE_LOCAL, RTN_MULTICAST = 255, 5


def tap_name(port_id: str) -> str:
    """The tap of a port: ``tap`` + the first 11 characters of its id (Neutron's rule)."""
    if not _PORT_ID.match(port_id):
        raise ValueError(f"bad port id {port_id!r}: expected a UUID")
    return TAP_PREFIX + port_id[:11]


def tap_sysctls(tap: str, ipv6: bool) -> dict[str, str]:
    """The per-interface sysctls an endpoint tap needs, in the order they are written.

    ``proxy_delay`` (not in a link dump) comes before ``proxy_arp``: a tap
    whose ``proxy_arp`` is on had its ``proxy_delay`` written too. ``ipv6``:
    the port may send IPv6, so IPv6 is turned on (last: it starts on a tap
    that already refuses router advertisements). The other taps have it
    turned off after their routes (``ipv6_off_path``).
    """
    settings = {
        f"net.ipv4.neigh.{tap}.proxy_delay": "0",
        f"net.ipv4.conf.{tap}.forwarding": "1",
        f"net.ipv4.conf.{tap}.proxy_arp": "1",
        f"net.ipv4.conf.{tap}.rp_filter": "0",
        f"net.ipv6.conf.{tap}.forwarding": "1",
        f"net.ipv6.conf.{tap}.accept_ra": "0",
    }
    if ipv6:
        settings[f"net.ipv6.conf.{tap}.disable_ipv6"] = "0"
    return settings


def _tap_sysctl_paths(tap: str, ipv6: bool) -> dict[str, str]:
    return {
        "/proc/sys/" + key.replace(".", "/"): value for key, value in tap_sysctls(tap, ipv6).items()
    }


def ipv6_off_path(tap: str) -> str:
    """The setting that turns IPv6 off on the tap of a port that never sends IPv6.

    A tap with IPv6 on has a multicast route (ff00::/8), and the kernel walks
    every IPv6 route of the namespace, holding its RTNL lock, whenever a link
    comes up, changes carrier or loses IPv6: with 10,000 IPv4 taps each plug
    delayed the route writes of everyone on the machine (BIRD's, the agent's)
    by ~5 ms (docs/benchmarks.md). Turning it off is such a walk too, so a
    pass does it after the routes are in place (``Links.ipv6_off``).
    """
    return f"/proc/sys/net/ipv6/conf/{tap}/disable_ipv6"


def needs_ipv6_off(tap: str, info: LinkInfo) -> bool:
    """True if the link dump shows IPv6 on (a kernel without IPv6 shows nothing)."""
    return info.conf.get(ipv6_off_path(tap)) == "0"


# Host sysctls that, when written, set the same value on every interface (the
# kernel's inet_forward_change and addrconf_forward_change): a tap's setting
# in a dump taken before them is stale once they are written.
_EVERY_INTERFACE = {
    "net.ipv4.ip_forward": "/proc/sys/net/ipv4/conf/{}/forwarding",
    "net.ipv4.conf.all.forwarding": "/proc/sys/net/ipv4/conf/{}/forwarding",
    "net.ipv6.conf.all.forwarding": "/proc/sys/net/ipv6/conf/{}/forwarding",
}


def every_interface(written: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The per-interface settings (path templates -> value) that host sysctls ``written`` set."""
    return {_EVERY_INTERFACE[k]: v for k, v in written if k in _EVERY_INTERFACE}


def with_settings(tap: str, info: LinkInfo, settings: Mapping[str, str]) -> LinkInfo:
    """``info`` with ``every_interface`` settings applied to the ones its dump showed.

    The first pass on a new host writes global forwarding after its link
    dump; without this its 10,000 taps were each written ``forwarding`` twice
    more, each write taking the kernel's RTNL lock (docs/benchmarks.md).
    """
    conf = {**info.conf}
    for template, value in settings.items():
        path = template.format(tap)
        if path in conf:
            conf[path] = value
    return LinkInfo(info.index, info.flags, conf)


def tap_ready(tap: str, info: LinkInfo, ipv6: bool, gateway6: bool) -> bool:
    """True if ``tap`` needs no preparation: up, its settings right, fe80::1 if ``ipv6``.

    Judged from a link dump (``info``): settings it does not show are taken
    as right once ``proxy_arp`` is (they are written before it).
    """
    if not info.flags & IFF_UP or (ipv6 and not gateway6):
        return False
    conf = info.conf
    if conf.get(f"/proc/sys/net/ipv4/conf/{tap}/proxy_arp", "1") != "1":
        return False  # never prepared: the common case on a new host, decided cheaply
    return all(
        conf.get(path, value) == value for path, value in _tap_sysctl_paths(tap, ipv6).items()
    )


class TapNotFound(LookupError):
    """The tap does not exist (yet): the VM is not plugged."""


@dataclass
class TapReport:
    """What ``Links.prepare_taps`` found and did."""

    ready: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)  # tap -> why
    changed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LinkInfo:
    """One link of a dump: its index, flags and the devconf settings the dump shows."""

    index: int
    flags: int
    conf: dict[str, str]  # /proc/sys path -> value, for devconf.KNOWN


class _LinkSocket(nlb.RouteSocket):
    """Link and address dumps and batched link/address writes on one raw netlink socket.

    pyroute2 has no request for one link by name that avoids a full dump per
    call, and decodes each message at ~0.1 ms; for 10,000 taps that made tap
    preparation quadratic (measured: 300 taps 22 s). Here one hand-parsed dump
    serves a whole pass, and writes go out in batches (``RouteSocket.send_batch``).
    """

    def links(self) -> dict[str, LinkInfo]:
        """Every link by name (statistics skipped: they are most of it).

        The kernel fills in each link's IPv4/IPv6 settings anyway; decoding
        the few the taps need spares reading them from /proc/sys.
        """
        request = _LINK_DUMP.pack(
            _LINK_DUMP.size, RTM_GETLINK, nlb.NLM_F_REQUEST | nlb.NLM_F_DUMP, 0, 0,
            socket.AF_UNSPEC, 0, 0, 0, 0, 0, 8, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS,
        )  # fmt: skip
        found: dict[str, LinkInfo] = {}
        for data, offset, length in self.dump_messages(request, RTM_NEWLINK):
            name, info = _parse_link(data[offset : offset + length])
            if name:
                found[name] = info
        return found

    def link(self, name: str) -> LinkInfo | None:
        """One link by name (a request, not a dump: microseconds); None if there is none."""
        encoded = name.encode() + b"\0"
        attr = RTATTR.pack(4 + len(encoded), IFLA_IFNAME) + encoded
        attr += b"\0" * (-len(attr) % 4)
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0) + attr
        body += RTATTR.pack(8, IFLA_EXT_MASK) + U32.pack(RTEXT_FILTER_SKIP_STATS)
        header = NLMSGHDR.pack(NLMSGHDR.size + len(body), RTM_GETLINK, nlb.NLM_F_REQUEST, 0, 0)
        try:
            reply = self.request(header + body, RTM_NEWLINK)
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.ENOENT):
                return None
            raise
        found, info = _parse_link(memoryview(reply))
        return info if found == name else None

    def addresses(self, family: int, index: int = 0) -> list[tuple[int, bytes]]:
        """(ifindex, address) of every address of ``family`` (AF_UNSPEC: all); of link ``index`` if given.

        The local address where the kernel gives one (on a point-to-point
        link IFA_ADDRESS is the peer's).
        """
        request = _ADDR_DUMP.pack(
            _ADDR_DUMP.size, RTM_GETADDR, nlb.NLM_F_REQUEST | nlb.NLM_F_DUMP, 0, 0,
            family, 0, 0, 0, index,
        )  # fmt: skip
        found: list[tuple[int, bytes]] = []
        for data, offset, length in self.dump_messages(request, RTM_NEWADDR):
            msg = data[offset : offset + length]
            *_, link = IFADDRMSG.unpack_from(msg, NLMSGHDR.size)
            if index and link != index:
                continue
            attrs: dict[int, bytes] = {}
            pos = NLMSGHDR.size + IFADDRMSG.size
            while pos + 4 <= len(msg):
                alen, akind = RTATTR.unpack_from(msg, pos)
                if alen < 4:
                    break
                if akind in (IFA_ADDRESS, IFA_LOCAL):
                    attrs[akind] = bytes(msg[pos + 4 : pos + alen])
                pos += (alen + 3) & ~3
            address = attrs.get(IFA_LOCAL, attrs.get(IFA_ADDRESS))
            if address is not None:
                found.append((link, address))
        return found

    def holders(self, address: bytes, index: int = 0) -> set[int]:
        """The ifindexes that have IPv6 ``address`` (16 bytes); only link ``index`` if given."""
        return {link for link, found in self.addresses(socket.AF_INET6, index) if found == address}

    def apply(self, requests: list[tuple[str, bytes]]) -> dict[str, str]:
        """Send ``(tap, message)`` requests in one batch; ``{tap: error}`` of the refused."""
        refused = self.send_batch([message for _, message in requests])
        return {
            requests[i][0]: os.strerror(error)
            for i, (error, _) in refused.items()
            if error != errno.EEXIST  # an address someone added first
        }


def _parse_link(msg: memoryview) -> tuple[str, LinkInfo]:
    """The name and LinkInfo of one RTM_NEWLINK message."""
    _family, _pad, _type, index, flags, _change = IFINFOMSG.unpack_from(msg, NLMSGHDR.size)
    pos = NLMSGHDR.size + IFINFOMSG.size
    name, spec = "", (0, 0)
    while pos + 4 <= len(msg):
        alen, akind = RTATTR.unpack_from(msg, pos)
        if alen < 4:
            break
        if akind == IFLA_IFNAME:
            name = bytes(msg[pos + 4 : pos + alen]).rstrip(b"\0").decode()
        elif akind & devconf.NLA_TYPE_MASK == devconf.IFLA_AF_SPEC:
            spec = (pos + 4, pos + alen)
        pos += (alen + 3) & ~3
    conf = devconf.parse_af_spec(msg, *spec, name) if name and ifnames.sysctl_safe(name) else {}
    return name, LinkInfo(index, flags, conf)


def _link_up(index: int) -> bytes:
    return _LINK_SET.pack(
        _LINK_SET.size, RTM_NEWLINK, nlb.NLM_F_REQUEST | nlb.NLM_F_ACK, 0, 0,
        socket.AF_UNSPEC, 0, 0, index, IFF_UP, IFF_UP,
    )  # fmt: skip


def _add_gateway_v6(index: int) -> bytes:
    return _ADDR_ADD.pack(
        _ADDR_ADD.size, RTM_NEWADDR,
        nlb.NLM_F_REQUEST | nlb.NLM_F_ACK | nlb.NLM_F_CREATE | NLM_F_EXCL, 0, 0,
        socket.AF_INET6, 64, IFA_F_NODAD, RT_SCOPE_LINK, index,
        20, IFA_ADDRESS, _GATEWAY_V6, 8, IFA_FLAGS, IFA_F_NODAD,
    )  # fmt: skip


def _delete_multicast_route6(index: int) -> bytes:
    return _DELETE_ROUTE6_DEV.pack(
        _DELETE_ROUTE6_DEV.size, nlb.RTM_DELROUTE, nlb.NLM_F_REQUEST | nlb.NLM_F_ACK, 0, 0,
        socket.AF_INET6, 8, 0, 0, RT_TABLE_LOCAL, 0, nlb.RT_SCOPE_UNIVERSE, RTN_MULTICAST, 0,
        20, nlb.RTA_DST, _MULTICAST6, 8, nlb.RTA_OIF, index,
    )  # fmt: skip


def _prepared_before(paths: dict[str, str], current: dict[str, str]) -> bool:
    """True if the tap's proxy_arp is on: some earlier pass (or agent) prepared it."""
    return any(current.get(path) == "1" for path in paths if path.endswith("/proxy_arp"))


def _write_sysctls(paths: dict[str, str], current: dict[str, str], read_first: bool) -> list[str]:
    """Write ``{/proc/sys path: value}`` where it differs from ``current`` (the link dump's).

    A setting the dump does not show (``neigh.*``) is read first only with
    ``read_first``: writing a value it already has changes nothing.
    ``forwarding`` is never written blindly: writing it tries the kernel's
    global RTNL lock and restarts the syscall while any namespace's work
    holds it (IPv6: even for an unchanged value), and a tap has it already
    wherever the host's global forwarding was on.
    """
    written: list[str] = []
    for path, value in paths.items():
        if path in current:
            if current[path] == value:
                continue
        elif read_first or path.endswith("/forwarding"):
            fd = os.open(path, os.O_RDONLY)
            try:
                if os.read(fd, 64).strip() == value.encode():
                    continue
            finally:
                os.close(fd)
        _write(path, value)
        written.append(path)
    return written


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


class Links:
    """Link operations in namespace ``netns`` (None: the current one) over one netlink socket.

    Stateless about taps: which ones need preparing is the caller's decision
    (the host agent's plan skips taps it prepared or a dump shows ready), so
    one tap's preparation costs the same on a host with 10,000 (a map of
    every prepared tap here was pruned against each call's taps: ~5 ms at
    10,000) and a tap whose settings were changed by hand is prepared again.
    """

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._nl = _LinkSocket(netns)

    def close(self) -> None:
        self._nl.close()

    def __enter__(self) -> Links:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ensure_host(self) -> list[str]:
        """Global forwarding and multipath hashing; returns the sysctls written."""
        return sysctl.ensure(sysctl.HOST_SYSCTLS, self.netns)

    def listing(self) -> dict[str, LinkInfo]:
        """Every link of the namespace (one dump): for ``names`` and ``prepare_taps``."""
        return self._nl.links()

    def link(self, name: str) -> LinkInfo | None:
        """One link by name; None if it does not exist."""
        return self._nl.link(name)

    def addresses(self) -> list[str]:
        """Every address of the namespace, both families, as text (one dump)."""
        found = self._nl.addresses(socket.AF_UNSPEC)
        return [str(ipaddress.ip_address(address)) for _, address in found]

    def with_gateway6(self, index: int = 0) -> set[int]:
        """The ifindexes that have fe80::1 (only link ``index``, if given)."""
        return self._nl.holders(_GATEWAY_V6, index)

    def names(
        self, prefix: str = TAP_PREFIX, listing: dict[str, LinkInfo] | None = None
    ) -> set[str]:
        """The links whose name starts with ``prefix`` (in ``listing``, or a new dump)."""
        links = self.listing() if listing is None else listing
        return {name for name in links if name.startswith(prefix)}

    def prepare_taps(
        self,
        taps: Iterable[str],
        ipv6: Collection[str] = (),
        listing: dict[str, LinkInfo] | None = None,
    ) -> TapReport:
        """Prepare every tap: sysctls, link up, and IPv6 with fe80::1 on the taps in ``ipv6``.

        The other taps get IPv6 turned off (``tap_sysctls``). Only taps of
        ports that may send IPv6 get fe80::1: the kernel's
        check for duplicate addresses makes adding the same address to many
        links quadratic (measured: 2,000 links 1.8 s, 4,000 links 12 s).
        One link dump (``listing``, if the caller took it this pass) and one
        address dump serve all taps; the writes go in netlink batches. The
        dump shows the IPv4/IPv6 settings, so only those that differ are
        written; a tap whose proxy_arp is still 0 was never prepared, so its
        ``neigh`` setting is written without reading it first.
        """
        report = TapReport()
        wanted = sorted(set(taps))
        for tap in wanted:
            if not ifnames.sysctl_safe(tap):
                raise ValueError(f"bad tap name {tap!r}")
        links = self.listing() if listing is None else listing
        with_gateway = self._nl.holders(_GATEWAY_V6) if ipv6 else set()
        requests: list[tuple[str, bytes]] = []
        with netns_mod.entered(self.netns):
            for tap in wanted:
                if tap not in links:
                    report.missing.add(tap)
                    continue
                index, flags, current = links[tap].index, links[tap].flags, links[tap].conf
                needs_gateway = tap in ipv6 and index not in with_gateway
                paths = _tap_sysctl_paths(tap, tap in ipv6)
                try:
                    prepared = _prepared_before(paths, current)
                    written = _write_sysctls(paths, current, read_first=prepared)
                except OSError as exc:
                    report.failed[tap] = f"sysctl: {exc}"
                    continue
                report.changed += [f"{tap} {path}" for path in written]
                if not flags & IFF_UP:
                    requests.append((tap, _link_up(index)))
                    report.changed.append(f"{tap} up")
                if needs_gateway:
                    requests.append((tap, _add_gateway_v6(index)))
                    report.changed.append(f"{tap} {LINK_LOCAL_GATEWAY_V6}")
                report.ready.add(tap)
        report.failed.update(self._nl.apply(requests))
        report.ready -= set(report.failed)
        return report

    def ipv6_off(self, taps: Iterable[tuple[str, int]]) -> dict[str, str]:
        """Turn IPv6 off on ``taps`` (name, index); the failures (tap -> why). A tap gone is none.

        Each tap's multicast route goes first, all in one netlink batch:
        turning IPv6 off walks every IPv6 route of the namespace, and while
        thousands of taps still hold theirs that was ~150 us a tap (10,000
        taps: 1.5 s; with the routes gone first 0.42 s, docs/dataplane.md).
        The kernel would remove the route itself, so a refused delete (gone
        already) changes nothing; the setting is what counts.
        """
        taps = list(taps)
        for tap, _ in taps:
            if not ifnames.sysctl_safe(tap):
                raise ValueError(f"bad tap name {tap!r}")
        self._nl.send_batch([_delete_multicast_route6(index) for _, index in taps])
        failed: dict[str, str] = {}
        with netns_mod.entered(self.netns):
            for tap, _ in taps:
                try:
                    _write(ipv6_off_path(tap), "1")
                except FileNotFoundError:
                    continue  # unplugged meanwhile: its link event wakes the loop
                except OSError as exc:
                    failed[tap] = f"sysctl: {exc}"
        return failed

    def ensure_tap(self, tap: str) -> list[str]:
        """Prepare one tap; returns what changed (empty: it was ready)."""
        report = self.prepare_taps([tap], ipv6=[tap])
        if tap in report.missing:
            raise TapNotFound(f"no interface {tap} in namespace {self.netns or '(current)'}")
        if tap in report.failed:
            raise OSError(f"preparing {tap} failed: {report.failed[tap]}")
        return report.changed


def egress_interfaces(host: str, netns: str | None = None) -> set[str]:
    """The interfaces this namespace would use to reach ``host`` (a name or an address).

    The host agent isolates them from the VMs: they carry its management
    traffic to the controller. Loopback and taps are never returned; an
    unresolvable or unroutable host gives an empty set.
    """
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        return set()
    # pyroute2 costs ~0.3 s to import and serves only this cold path here.
    from pyroute2 import IPRoute

    found: set[str] = set()
    with IPRoute(netns=netns) as ipr:
        for info in infos:
            address = info[4][0]
            try:
                routes = ipr.route("get", dst=address)
            except Exception:  # pyroute2 raises NetlinkError (ENETUNREACH, ...)
                continue
            for route in routes:
                index = route.get_attr("RTA_OIF")
                if index is None:
                    continue
                name = ipr.get_links(index)[0].get_attr("IFLA_IFNAME")
                if name and name != "lo" and not name.startswith("tap"):
                    found.add(name)
    return found
