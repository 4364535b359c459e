"""Who may announce what to the gateway: each address only from the host it is bound to.

Pure functions of the gateway's cache (its watch holds every bound port and
every anycast group): a port's fixed IPs (as /32 or /128) belong to the host
named in its ``binding:host_id``, and so do its host-length allowed address
pairs; an anycast address belongs to every host with a member port bound to it. Nothing else is any host's to announce.
``gateway/bird.py`` turns this into per-session import filters and, where
hosts have their own AS, into ROA entries (origin validation).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from l3fabric.addresses import parse_address
from l3fabric.agent.desired import host_prefix
from l3fabric.asn import effective_asn
from l3fabric.client import HostState


@dataclass(frozen=True)
class Origins:
    """The prefixes each registered host may announce, its AS and its session address."""

    prefixes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # host -> sorted
    asns: Mapping[str, int] = field(default_factory=dict)  # host -> its AS
    # Canonical address -> host: its registered address and the host's end of
    # each peer it lists (``local``: a dual-stack host's IPv6 session, say).
    addresses: Mapping[str, str] = field(default_factory=dict)
    # Hosts have their own AS (host_asn per-host): the origin AS identifies them.
    per_host_as: bool = False

    def host_at(self, address: str) -> str | None:
        """The registered host whose address ``address`` is (a peer that is a host), or None."""
        return self.addresses.get(str(parse_address(address)))


def _add(owned: dict[str, set[str]], host: str, address: Any) -> None:
    # The API validated it; one bad record must not stop the gateway.
    with contextlib.suppress(ValueError):
        owned[host].add(host_prefix(str(address)))


def _session_addresses(host: dict[str, Any]) -> list[str]:
    ends = [p["local"] for p in host.get("peers") or () if p.get("local")]
    return [host["address"], *ends]


def origins(state: HostState) -> Origins:
    """Who may announce what, from the gateway's cache."""
    owned: dict[str, set[str]] = {name: set() for name in state.hosts}
    bound: dict[str, str] = {}
    for port in state.ports.values():
        host = port.get("binding:host_id")
        if host in owned:
            bound[str(port.get("id"))] = host
            for ip in port.get("fixed_ips") or ():
                _add(owned, host, ip.get("ip_address"))
            # A host-length allowed address pair is an address the port may hold
            # (anycast by pairs): its host announces it while the VM answers.
            for pair in port.get("allowed_address_pairs") or ():
                text = str(pair.get("ip_address", ""))
                if text.endswith(("/32", "/128")):
                    text = text.rpartition("/")[0]
                if "/" not in text:
                    _add(owned, host, text)
    for group in state.anycast.values():
        for member in group.get("members") or ():
            if member in bound and group.get("address"):
                _add(owned, bound[member], group["address"])
    return Origins(
        prefixes={h: tuple(sorted(p)) for h, p in owned.items()},
        asns={h: effective_asn(r, state.fabric) for h, r in state.hosts.items()},
        addresses={
            str(parse_address(a)): h for h, r in state.hosts.items() for a in _session_addresses(r)
        },
        per_host_as=state.fabric.get("host_asn") == "per-host",
    )
