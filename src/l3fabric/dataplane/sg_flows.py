"""Which tracked flows the security groups no longer allow: pure, mirroring the nft rules.

An established flow passes ``ct state established`` whatever the rules say, so
removing the last rule that allowed it must also remove its conntrack entry.
``stale_flows(state, flows, host_addresses)`` evaluates each flow's original
direction as the forward chains would see its first packet: the sender's
egress (if the source is a port of this host) and the receiver's ingress (if
the destination is); a flow the host itself starts or ends never crosses
forward, so it is never judged. ``parse_conntrack`` reads ``conntrack -L -o
extended``.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from l3fabric.dataplane.sg_model import (
    ICMP_PROTOCOLS,
    ICMPV6,
    PORT_PROTOCOLS,
    Direction,
    SgPort,
    SgRule,
    SgState,
)
from l3fabric.dataplane.sg_render import ND_TYPES

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_PROTO_NUMBER = re.compile(r"^ipv([46])\s+\d+\s+\S+\s+(\d+)\s")
_FIELD = re.compile(r"(\w+)=(\S+)")


@dataclass(frozen=True)
class Flow:
    """A flow's original tuple (as conntrack shows it first). ICMP: ``sport`` is the id."""

    version: int
    protocol: int
    src: str
    dst: str
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None


def _num(fields: Mapping[str, str], key: str) -> int | None:
    value = fields.get(key, "")
    return int(value) if value.isdigit() else None


def parse_conntrack(text: str) -> list[Flow]:
    """Lines of ``conntrack -L -o extended`` -> flows (lines it cannot read are skipped)."""
    flows = []
    for line in text.splitlines():
        head = _PROTO_NUMBER.match(line)
        if not head:
            continue
        fields: dict[str, str] = {}
        for key, value in _FIELD.findall(line):
            fields.setdefault(key, value)  # the first of each: the original direction
        if "src" not in fields or "dst" not in fields:
            continue

        flows.append(
            Flow(
                version=int(head.group(1)),
                protocol=int(head.group(2)),
                src=fields["src"],
                dst=fields["dst"],
                sport=_num(fields, "sport") if "sport" in fields else _num(fields, "id"),
                dport=_num(fields, "dport"),
                icmp_type=_num(fields, "type"),
                icmp_code=_num(fields, "code"),
            )
        )
    return flows


@functools.lru_cache(maxsize=1024)
def _prefixes(prefixes: tuple[str, ...]) -> tuple[frozenset[Address], tuple[Network, ...]]:
    """Host prefixes as addresses (a set lookup), the rest as networks (parsed once)."""
    nets = [ipaddress.ip_network(p, strict=False) for p in prefixes]
    hosts = frozenset(n.network_address for n in nets if n.num_addresses == 1)
    return hosts, tuple(n for n in nets if n.num_addresses > 1)


def _in(address: str, prefixes: Iterable[str]) -> bool:
    ip = ipaddress.ip_address(address)
    hosts, nets = _prefixes(tuple(prefixes))
    return ip in hosts or any(ip in n for n in nets if n.version == ip.version)


def rule_matches(
    rule: SgRule, members: Mapping[str, Iterable[str]], flow: Flow, remote: str
) -> bool:
    """Whether ``rule`` accepts ``flow``; ``remote``: the address on the far side."""
    if rule.version != flow.version:
        return False
    if rule.protocol is not None:
        if rule.protocol != flow.protocol:
            return False
        if rule.port_min is not None:
            if rule.protocol in ICMP_PROTOCOLS:
                if flow.icmp_type != rule.port_min:
                    return False
                if rule.port_max is not None and flow.icmp_code != rule.port_max:
                    return False
            elif rule.protocol in PORT_PROTOCOLS:
                port_max = rule.port_max if rule.port_max is not None else rule.port_min
                if flow.dport is None or not rule.port_min <= flow.dport <= port_max:
                    return False
    if rule.remote_group:
        return _in(remote, members.get(rule.remote_group, ()))
    if rule.remote_prefix:
        return _in(remote, (rule.remote_prefix,))
    return True


def allows(state: SgState, port: SgPort | None, direction: Direction, flow: Flow) -> bool:
    """Whether ``port``'s chain for ``direction`` accepts the first packet of ``flow``.

    No port (a tap not in the maps): dropped. Port security off: accepted.
    """
    if port is None:
        return False
    if not port.port_security:
        return True
    if flow.version == 6 and flow.protocol == ICMPV6 and flow.icmp_type in ND_TYPES:
        return True
    remote = flow.src if direction == "ingress" else flow.dst
    for group_id in port.groups:
        group = state.groups.get(group_id)
        if group is None:
            continue
        if any(rule_matches(r, state.members, flow, remote) for r in group.direction(direction)):
            return True
    return False


class _Owners:
    """The ports of this host holding an address: exact addresses by lookup, CIDRs by scan."""

    def __init__(self, ports: Iterable[SgPort]) -> None:
        self.exact: dict[Address, list[SgPort]] = {}
        self.ranges: list[tuple[Network, SgPort]] = []
        for port in ports:
            hosts, nets = _prefixes(port.addresses)
            for ip in hosts:
                self.exact.setdefault(ip, []).append(port)
            self.ranges += [(n, port) for n in nets]

    def __call__(self, address: str) -> list[SgPort]:
        ip = ipaddress.ip_address(address)
        found = list(self.exact.get(ip, ()))
        return found + [
            p for n, p in self.ranges if n.version == ip.version and ip in n and p not in found
        ]


def stale_flows(
    state: SgState, flows: Iterable[Flow], host_addresses: Iterable[str] = ()
) -> list[Flow]:
    """The flows through this host's ports that ``state`` would not let start now.

    An address held by several ports (anycast) passes if any of them admits it.
    """
    host = {ipaddress.ip_address(a) for a in host_addresses}
    owners = _Owners(state.ports.values())
    stale = []
    for flow in flows:
        if ipaddress.ip_address(flow.src) in host or ipaddress.ip_address(flow.dst) in host:
            continue
        senders, receivers = owners(flow.src), owners(flow.dst)
        sent = not senders or any(allows(state, p, "egress", flow) for p in senders)
        received = not receivers or any(allows(state, p, "ingress", flow) for p in receivers)
        if not (sent and received):
            stale.append(flow)
    return stale


def delete_args(flow: Flow) -> list[str]:
    """``conntrack -D`` arguments that delete exactly ``flow``."""
    args = ["-D", "-f", f"ipv{flow.version}", "-p", str(flow.protocol)]
    args += ["-s", flow.src, "-d", flow.dst]
    if flow.protocol in ICMP_PROTOCOLS:
        word = "icmp" if flow.protocol == 1 else "icmpv6"
        args[4] = word
        for key, value in (("type", flow.icmp_type), ("code", flow.icmp_code), ("id", flow.sport)):
            if value is not None:
                args += [f"--{word}-{key}", str(value)]
    elif flow.sport is not None and flow.dport is not None:
        names: dict[int, Any] = {6: "tcp", 17: "udp", 132: "sctp", 33: "dccp", 136: "udplite"}
        if flow.protocol in names:
            args[4] = names[flow.protocol]
            args += ["--sport", str(flow.sport), "--dport", str(flow.dport)]
    return args
