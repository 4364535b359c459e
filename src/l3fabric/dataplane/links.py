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

import re
import socket

from pyroute2 import IPRoute

from l3fabric.dataplane import sysctl

TAP_PREFIX = "tap"
LINK_LOCAL_GATEWAY_V6 = "fe80::1"
IFF_UP = 0x1
IFA_F_NODAD = 0x02
_PORT_ID = re.compile(r"^[0-9A-Za-z-]{11,}$")


def tap_name(port_id: str) -> str:
    """The tap of a port: ``tap`` + the first 11 characters of its id (Neutron's rule)."""
    if not _PORT_ID.match(port_id):
        raise ValueError(f"bad port id {port_id!r}: expected a UUID")
    return TAP_PREFIX + port_id[:11]


def tap_sysctls(tap: str) -> dict[str, str]:
    """The per-interface sysctls an endpoint tap needs."""
    return {
        f"net.ipv4.conf.{tap}.forwarding": "1",
        f"net.ipv4.conf.{tap}.proxy_arp": "1",
        f"net.ipv4.conf.{tap}.rp_filter": "0",
        f"net.ipv4.neigh.{tap}.proxy_delay": "0",
        f"net.ipv6.conf.{tap}.forwarding": "1",
        f"net.ipv6.conf.{tap}.accept_ra": "0",
    }


class TapNotFound(LookupError):
    """The tap does not exist (yet): the VM is not plugged."""


class Links:
    """Link operations in namespace ``netns`` (None: the current one) over one pyroute2 socket."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._ipr = IPRoute(netns=netns)

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self) -> Links:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ensure_host(self) -> list[str]:
        """Global forwarding and multipath hashing; returns the sysctls written."""
        return sysctl.ensure(sysctl.HOST_SYSCTLS, self.netns)

    def ensure_tap(self, tap: str) -> list[str]:
        """Prepare ``tap``: up, sysctls, fe80::1. Returns what changed (empty: it was ready)."""
        found = self._ipr.link_lookup(ifname=tap)
        if not found:
            raise TapNotFound(f"no interface {tap} in namespace {self.netns or '(current)'}")
        index = found[0]
        changed: list[str] = []
        link = self._ipr.get_links(index)[0]
        if not link["flags"] & IFF_UP:
            self._ipr.link("set", index=index, state="up")
            changed.append(f"{tap} up")
        changed += sysctl.ensure(tap_sysctls(tap), self.netns)
        addresses = self._ipr.get_addr(index=index, family=socket.AF_INET6)
        if not any(a.get_attr("IFA_ADDRESS") == LINK_LOCAL_GATEWAY_V6 for a in addresses):
            self._ipr.addr(
                "add",
                index=index,
                address=LINK_LOCAL_GATEWAY_V6,
                prefixlen=64,
                flags=IFA_F_NODAD,
            )
            changed.append(f"{tap} {LINK_LOCAL_GATEWAY_V6}")
        return changed
