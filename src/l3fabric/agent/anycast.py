"""Which addresses are anycast on this host, and who serves them: pure functions of the cache.

Two sources of anycast addresses (docs/anycast.md):

- native groups (``HostState.anycast``): a member is local when its port is
  bound to this host, administratively up and its tap is ready; it is probed
  with the group's health check and serves only while healthy (no check: a
  ready member is healthy);
- the Neutron way: host-length ``allowed_address_pairs`` (/32, /128) of local
  ready ports that are not one of the port's own fixed IPs; no probe, ready
  means healthy (the VM decides by holding the address or not).

``plan()`` turns the cache, the ready taps and the probes' verdicts into what
the host programs: the probe targets, per prefix the healthy member taps (one
equal share each), the member count to announce, and the extra sources the
anti-spoofing guard allows (a native member answers from the group address;
pair addresses are allowed already). No I/O here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from l3fabric.agent.desired import host_prefix
from l3fabric.dataplane.links import tap_name

CHECK_TYPES = ("tcp", "http", "icmp")


@dataclass(frozen=True)
class Check:
    """A group's health check (the API's ``HealthCheck``), as the prober needs it."""

    type: str
    port: int | None = None
    path: str = "/"
    interval_s: float = 1.0
    timeout_s: float = 0.5
    rise: int = 2
    fall: int = 2

    def __post_init__(self) -> None:
        if self.type not in CHECK_TYPES:
            raise ValueError(f"unknown health check type {self.type!r}: use tcp, http or icmp")
        if self.type != "icmp" and self.port is None:
            raise ValueError(f"a {self.type} health check needs a port")
        if self.interval_s <= 0 or self.timeout_s <= 0:
            raise ValueError("health check interval and timeout must be positive")
        if self.rise < 1 or self.fall < 1:
            raise ValueError("health check rise and fall must be at least 1")

    @classmethod
    def from_api(cls, spec: Mapping[str, Any]) -> Check:
        """From a group's ``health_check`` object; ValueError if it is malformed."""
        try:
            return cls(
                type=str(spec["type"]),
                port=int(spec["port"]) if spec.get("port") is not None else None,
                path=str(spec.get("path") or "/"),
                interval_s=float(spec.get("interval_s", 1.0)),
                timeout_s=float(spec.get("timeout_s", 0.5)),
                rise=int(spec.get("rise", 2)),
                fall=int(spec.get("fall", 2)),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"bad health check {dict(spec)!r}: {exc}") from None


@dataclass(frozen=True)
class ProbeTarget:
    """One local member of a native group to probe: at its own fixed IP of the group's family."""

    group: str
    port_id: str
    address: str
    check: Check

    @property
    def key(self) -> tuple[str, str]:
        return self.group, self.port_id


@dataclass
class AnycastPlan:
    """What this host does for anycast, given the cache, ready taps and probe verdicts."""

    probes: dict[tuple[str, str], ProbeTarget] = field(default_factory=dict)
    # prefix -> healthy local member taps, sorted: each one equal share.
    serving: dict[str, list[str]] = field(default_factory=dict)
    # tap -> anycast source prefixes it may send from (native group addresses).
    sources: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def announce(self) -> dict[str, int]:
        """Prefix -> healthy local members: announce each with this count."""
        return {prefix: len(taps) for prefix, taps in self.serving.items()}

    def routes(self) -> dict[str, list[tuple[str | None, str, int]]]:
        """The ``ResilientRoutes.converge`` input: every healthy member one equal share."""
        return {prefix: [(None, tap, 1) for tap in taps] for prefix, taps in self.serving.items()}


def _is_local(port: Mapping[str, Any], host: str) -> bool:
    return port.get("binding:host_id") == host


def _own_address(port: Mapping[str, Any], version: int) -> str | None:
    for fixed in port.get("fixed_ips") or []:
        if ipaddress.ip_address(fixed["ip_address"]).version == version:
            return str(fixed["ip_address"])
    return None


def _pair_prefixes(port: Mapping[str, Any]) -> list[str]:
    """Host-length allowed address pairs that are not one of the port's own fixed IPs."""
    own = {host_prefix(f["ip_address"]) for f in port.get("fixed_ips") or []}
    found: list[str] = []
    for pair in port.get("allowed_address_pairs") or []:
        try:
            net = ipaddress.ip_network(pair.get("ip_address", ""), strict=False)
        except ValueError:
            continue  # the API validated pairs; one bad value must not stop the rest
        if net.prefixlen == net.max_prefixlen and str(net) not in own:
            found.append(str(net))
    return found


def plan(
    host: str,
    ports: Mapping[str, Mapping[str, Any]],
    groups: Iterable[Mapping[str, Any]],
    ready_taps: Container[str],
    health: Mapping[tuple[str, str], bool],
    presumed: Mapping[str, Iterable[str]] | None = None,
    endpoints: Container[str] | None = None,
    pair_ports: Iterable[str] | None = None,
) -> AnycastPlan:
    """Anycast on ``host``: ``ports`` by id (the cache), ``groups`` (``HostState.anycast``).

    ``ready_taps``: taps whose port is programmed (guarded, routed).
    ``health``: the probes' verdicts by (group id, port id); a member without
    a verdict yet is not healthy (it serves from its first good probe on),
    unless it is in ``presumed`` (prefix -> taps that served when the agent
    started): a restarted agent keeps serving until the probe says otherwise.
    A prefix that is a local endpoint (a fixed IP of a port here) is never
    anycast: its endpoint route already forwards it. ``endpoints``: those
    prefixes and ``pair_ports``: the ids of the ports with allowed address
    pairs, if the caller has them already (else they are read from every
    port). With both, the plan reads only the groups' members and the pair
    ports: its cost is the anycast's size, not the host's.
    """
    result = AnycastPlan()
    serving: dict[str, set[str]] = {}

    def ready(port: Mapping[str, Any]) -> str | None:
        tap = tap_name(str(port["id"]))
        up = bool(port.get("admin_state_up", True)) and _is_local(port, host)
        return tap if up and tap in ready_taps else None

    local: Container[str]
    if endpoints is None:
        local = {host_prefix(f["ip_address"]) for p in ports.values() for f in p.get("fixed_ips") or []}  # fmt: skip
    else:
        local = endpoints
    holders = ports.values() if pair_ports is None else (ports[p] for p in pair_ports if p in ports)
    pairs: list[tuple[str, str]] = []  # (prefix, tap)
    for port in holders:
        if port.get("allowed_address_pairs"):
            tap = ready(port)
            if tap is not None:
                pairs += [(prefix, tap) for prefix in _pair_prefixes(port)]

    for group in groups:
        gid, address = str(group["id"]), str(group["address"])
        prefix = host_prefix(address)
        try:
            spec = group.get("health_check")
            check = Check.from_api(spec) if spec else None
        except ValueError as exc:
            result.errors.append(f"anycast group {gid}: {exc}")
            continue
        for port_id in group.get("members") or []:
            port = ports.get(port_id)
            if port is None or not _is_local(port, host):
                continue
            # Even before it is ready: a member answers from the address from its first packet.
            result.sources.setdefault(tap_name(port_id), []).append(prefix)
            tap = ready(port)
            if tap is None or prefix in local:
                continue
            if check is None:
                serving.setdefault(prefix, set()).add(tap)
                continue
            own = _own_address(port, ipaddress.ip_address(address).version)
            if own is None:
                result.errors.append(
                    f"anycast group {gid}: member {port_id} has no IPv"
                    f"{ipaddress.ip_address(address).version} address to probe"
                )
                continue
            target = ProbeTarget(gid, str(port_id), own, check)
            result.probes[target.key] = target
            if health.get(target.key, tap in (presumed or {}).get(prefix, ())):
                serving.setdefault(prefix, set()).add(tap)
    for prefix, tap in pairs:
        if prefix not in local:
            serving.setdefault(prefix, set()).add(tap)
    result.serving = {prefix: sorted(taps) for prefix, taps in sorted(serving.items())}
    return result
