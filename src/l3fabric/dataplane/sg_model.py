"""Security groups as the host enforces them: a pure model built from Neutron-shaped dicts.

``build_state(groups, ports, members)`` turns the API's ``security_group``
objects (rules embedded in ``security_group_rules``, or given apart), this
host's ports and the remote-group memberships (``memberships(all_ports)``:
every fixed IP and ``allowed_address_pairs`` entry of every member port, on
every host) into an ``SgState``. A malformed rule is skipped and reported in
``SgState.errors``; it never breaks another rule or port. Skipping an allow
rule fails closed: it admits less, never more.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from l3fabric.addresses import host_prefix_version
from l3fabric.dataplane.links import tap_name
from l3fabric.protocols import (  # noqa: F401 (re-exported for the dataplane modules)
    ICMP,
    ICMP_PROTOCOLS,
    ICMPV6,
    PORT_PROTOCOLS,
    PROTOCOL_NUMBERS,
    SCTP,
    TCP,
    UDP,
)

Direction = Literal["ingress", "egress"]


@dataclass(frozen=True, order=True)
class SgRule:
    """One rule, normalised: protocol a number (None: any), ports or ICMP type/code, one remote."""

    direction: Direction
    ethertype: Literal["IPv4", "IPv6"]
    protocol: int | None = None
    port_min: int | None = None  # ICMP: type
    port_max: int | None = None  # ICMP: code
    remote_prefix: str | None = None  # canonical network text
    remote_group: str | None = None

    @property
    def version(self) -> int:
        return 4 if self.ethertype == "IPv4" else 6


@dataclass(frozen=True)
class SecurityGroup:
    """A group and its (valid) rules, sorted: the rendering does not depend on API order."""

    id: str
    rules: tuple[SgRule, ...] = ()

    def direction(self, direction: Direction) -> tuple[SgRule, ...]:
        return tuple(r for r in self.rules if r.direction == direction)


@dataclass(frozen=True)
class SgPort:
    """A port of this host: its tap, groups (a union), port security, addresses (prefixes)."""

    tap: str
    groups: tuple[str, ...] = ()
    port_security: bool = True
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class SgState:
    """Everything the host enforces: groups used here, ports by tap, remote-group members."""

    groups: Mapping[str, SecurityGroup] = field(default_factory=dict)
    ports: Mapping[str, SgPort] = field(default_factory=dict)
    members: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # group -> prefixes
    errors: tuple[str, ...] = ()


def _int(value: Any, what: str, top: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{what} {value!r} is not a number")
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{what} {value!r} is not a number") from None
    if not 0 <= number <= top:
        raise ValueError(f"{what} {number} is not in 0..{top}")
    return number


def _protocol(value: Any, ethertype: str) -> int | None:
    if value is None or value == "any":
        return None
    if isinstance(value, str) and value.lower() in PROTOCOL_NUMBERS:
        number = PROTOCOL_NUMBERS[value.lower()]
    else:
        try:
            number = _int(value, "protocol", 255)
        except ValueError:
            raise ValueError(f"protocol {value!r} is not a known name or a number 0..255") from None
    # Neutron: "icmp" on an IPv6 rule means ICMPv6.
    return ICMPV6 if number == ICMP and ethertype == "IPv6" else number


def _ports(protocol: int | None, low: Any, high: Any) -> tuple[int | None, int | None]:
    if low is None and high is None:
        return None, None
    if protocol in ICMP_PROTOCOLS:
        if low is None:
            raise ValueError("an ICMP code (port_range_max) needs a type (port_range_min)")
        return _int(low, "ICMP type", 255), None if high is None else _int(high, "ICMP code", 255)
    if protocol not in PORT_PROTOCOLS:
        raise ValueError(f"protocol {protocol or 'any'} has no ports")
    first = _int(low if low is not None else high, "port_range_min", 65535)
    last = _int(high if high is not None else low, "port_range_max", 65535)
    if first > last:
        raise ValueError(f"port_range_min {first} is above port_range_max {last}")
    return first, last


def rule_of(rule: Mapping[str, Any]) -> SgRule:
    """One ``security_group_rule`` object -> SgRule; ValueError says what is wrong."""
    direction = rule.get("direction")
    if direction not in ("ingress", "egress"):
        raise ValueError(f"direction {direction!r} is not ingress or egress")
    ethertype = rule.get("ethertype") or "IPv4"
    if ethertype not in ("IPv4", "IPv6"):
        raise ValueError(f"ethertype {ethertype!r} is not IPv4 or IPv6")
    protocol = _protocol(rule.get("protocol"), ethertype)
    low, high = _ports(protocol, rule.get("port_range_min"), rule.get("port_range_max"))
    prefix, group = rule.get("remote_ip_prefix"), rule.get("remote_group_id")
    if rule.get("remote_address_group_id"):
        raise ValueError("remote_address_group_id is not supported")
    if prefix and group:
        raise ValueError("remote_ip_prefix and remote_group_id exclude each other")
    if prefix:
        net = ipaddress.ip_network(str(prefix), strict=False)
        if net.version != (4 if ethertype == "IPv4" else 6):
            raise ValueError(f"remote_ip_prefix {prefix} is not {ethertype}")
        # 0.0.0.0/0 is "anywhere": the same as no prefix.
        prefix = None if net.prefixlen == 0 else str(net)
    if group is not None and (not isinstance(group, str) or not group):
        raise ValueError(f"remote_group_id {group!r} is not an id")
    return SgRule(direction, ethertype, protocol, low, high, prefix or None, group or None)


def _group_rules(
    group_id: str, rules: Iterable[Mapping[str, Any]], errors: list[str]
) -> tuple[SgRule, ...]:
    valid: set[SgRule] = set()
    for rule in rules:
        try:
            valid.add(rule_of(rule))
        except (ValueError, TypeError, AttributeError) as exc:
            ident = rule.get("id", "?") if isinstance(rule, Mapping) else "?"
            errors.append(f"security group {group_id} rule {ident}: {exc} (rule skipped)")
    return tuple(sorted(valid, key=repr))


def _port_addresses(port: Mapping[str, Any]) -> list[str]:
    found = [ip["ip_address"] for ip in port.get("fixed_ips") or ()]
    found += [pair["ip_address"] for pair in port.get("allowed_address_pairs") or ()]
    return found


def _one_host(text: str) -> str | None:
    """``text`` as a canonical host prefix if it is one address in canonical form, else None."""
    prefix = text if "/" in text else f"{text}/{128 if ':' in text else 32}"
    return prefix if host_prefix_version(prefix) else None


def collapse(prefixes: Iterable[str]) -> tuple[str, ...]:
    """Prefixes merged (an interval set refuses overlaps), IPv4 first, bad ones left out."""
    prefixes = list(prefixes)
    if len(prefixes) == 1 and isinstance(prefixes[0], str) and (one := _one_host(prefixes[0])):
        # Most ports: one fixed IP. No ipaddress objects (~30 us a port, 0.3 s
        # of a 10,000-port pass).
        return (one,)
    nets: dict[int, list[Any]] = {4: [], 6: []}
    for text in prefixes:
        try:
            net = ipaddress.ip_network(str(text), strict=False)
        except ValueError:
            continue
        nets[net.version].append(net)
    return tuple(str(n) for v in (4, 6) for n in ipaddress.collapse_addresses(nets[v]))


def port_security(port: Mapping[str, Any]) -> bool:
    return port.get("port_security_enabled", True) is not False


def memberships(ports: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Group id -> the fixed IPs and allowed address pairs of its member ports (all hosts)."""
    found: dict[str, list[str]] = {}
    for port in ports:
        if not port_security(port):
            continue
        addresses = _port_addresses(port)
        for group in port.get("security_groups") or ():
            found.setdefault(group, []).extend(addresses)
    return {group: collapse(prefixes) for group, prefixes in found.items()}


def sg_port(port: Mapping[str, Any], tap: str) -> SgPort:
    """One port of this host (its tap already named) as the host filters it."""
    enabled = port_security(port)
    return SgPort(
        tap=tap,
        groups=tuple(sorted(set(port.get("security_groups") or ()))) if enabled else (),
        port_security=enabled,
        addresses=collapse(_port_addresses(port)),
    )


def sg_group(
    group_id: str,
    group: Mapping[str, Any] | None,
    loose: Mapping[str, list[Mapping[str, Any]]],
    errors: list[str],
) -> SecurityGroup:
    """Group ``group_id`` (None: unknown, admits nothing) with its valid rules."""
    if group is None:
        errors.append(f"security group {group_id}: unknown (its ports admit nothing by it)")
        return SecurityGroup(group_id)
    embedded = group.get("security_group_rules")
    listed = embedded if embedded is not None else loose.get(group_id, [])
    return SecurityGroup(group_id, _group_rules(group_id, listed, errors))


def build_state(
    groups: Iterable[Mapping[str, Any]],
    ports: Iterable[Mapping[str, Any]],
    members: Mapping[str, Iterable[str]],
    rules: Iterable[Mapping[str, Any]] = (),
) -> SgState:
    """The host's SgState from API objects: ``groups``, this host's ``ports``, ``members``.

    ``rules``: ``security_group_rule`` objects for groups that do not embed them.
    A port's group that is not in ``groups`` admits nothing (and is reported).
    """
    errors: list[str] = []
    loose: dict[str, list[Mapping[str, Any]]] = {}
    for rule in rules:
        loose.setdefault(rule.get("security_group_id", ""), []).append(rule)
    by_id = {g["id"]: g for g in groups}
    sg_ports: dict[str, SgPort] = {}
    for port in ports:
        try:
            tap = tap_name(port["id"])
        except (KeyError, TypeError, ValueError) as exc:
            errors.append(f"port {port.get('id')!r}: {exc} (no tap, not filtered here)")
            continue
        sg_ports[tap] = sg_port(port, tap)
    used = sorted({g for p in sg_ports.values() for g in p.groups})
    sg_groups: dict[str, SecurityGroup] = {}
    for group_id in used:
        sg_groups[group_id] = sg_group(group_id, by_id.get(group_id), loose, errors)
    remote = sorted({r.remote_group for g in sg_groups.values() for r in g.rules if r.remote_group})
    return SgState(
        groups=sg_groups,
        ports=sg_ports,
        members={g: collapse(members.get(g, ())) for g in remote},
        errors=tuple(errors),
    )
