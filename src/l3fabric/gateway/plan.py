"""The gateway agent's whole policy: what the gateway should hold, and the ordered steps to get there.

Pure functions, no I/O; unit-tested with plain data (tests/unit/test_gateway_plan.py):

- ``desired_state(name, view, observed)``: from the controller's view and
  what the gateway holds: forwarding sysctls, the NAT table's policy, the
  anycast resilient groups (from the paths BIRD learned), the BIRD config.
  The only place that decides what the gateway should look like.
- ``plan(desired, observed)``: the operations (agent/ops.py, gateway/ops.py)
  that make ``observed`` ``desired``, in an order that never exposes a half
  state:

  1. host: forwarding and multipath hashing sysctls;
  2. withdraw: BIRD stops announcing upstream (and importing from the
     fabric) what goes, before the NAT table changes;
  3. nat: the NAT and inbound-shield table, whole; then sync: conntrackd
     (a gateway pair's shared NAT state) with its config;
  4. anycast: the resilient groups, edited in place;
  5. announce: BIRD's full config, only once the NAT table is in place (a new
     public subnet is announced upstream after its table is right; a new
     private one is imported only once it is shielded).

  A gateway that is already right gets no operation at all.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from l3fabric.addresses import parse_address, parse_network
from l3fabric.agent.ops import BirdWithdraw, Op, SysctlSet
from l3fabric.client import HostState
from l3fabric.dataplane.nexthops import Member
from l3fabric.dataplane.nft import digest_of
from l3fabric.dataplane.sysctl import HOST_SYSCTLS
from l3fabric.gateway import conntrackd, steer
from l3fabric.gateway.anycast import anycast_members
from l3fabric.gateway.bird import GatewayRouting, gateway_config, routing_from_state
from l3fabric.gateway.desired import GatewayDesired, NotRegistered
from l3fabric.gateway.nat import NatPolicy, expected_listing, policy, port_slice
from l3fabric.gateway.observed import GatewayObserved
from l3fabric.gateway.ops import AnycastGroupsSet, GatewayBirdConfigure, NatTableSet, SyncSet
from l3fabric.routing.bird_config import BirdConfig, render

# Forwarding, and L4 hashing over equal paths: with the kernel's default
# (policy 0) every flow of one client to an anycast address takes one member.
FORWARDING = HOST_SYSCTLS


@dataclass(frozen=True)
class DesiredGateway:
    """Everything one pass makes true on the gateway."""

    routing: GatewayRouting | None = None  # None: not registered yet
    sysctls: dict[str, str] = field(default_factory=lambda: dict(FORWARDING))
    nat: NatPolicy | None = None
    anycast: dict[str, list[Member]] | None = None  # None: BIRD did not answer, leave them
    bird: BirdConfig | None = None
    errors: tuple[str, ...] = ()
    conntrackd: str | None = None  # the state sync's config (None: no sync link, none runs)
    steer: str | None = None  # the handshake steering table (gateway/steer.py; None: none)

    @property
    def policy(self) -> GatewayDesired | None:
        return self.routing.desired if self.routing else None


def upstream_addresses(view: HostState, name: str) -> list[str]:
    """The upstream peers' addresses of gateway ``name`` (what observe looks routes up for)."""
    record = view.gateways.get(name) or {}
    return [str(p.get("address")) for p in record.get("upstream") or []]


def _nat_policy(routing: GatewayRouting, record: dict, observed: GatewayObserved) -> NatPolicy:
    ifaces = set().union(*(observed.egress.get(str(p.address), ()) for p in routing.upstream))
    snat, pool = record.get("snat_address"), record.get("snat_pool")
    return policy(
        [parse_network(p) for p in routing.desired.private],
        ifaces,
        parse_address(snat) if snat is not None else None,
        parse_network(pool) if pool is not None else None,
        port_slice(int(record.get("snat_index", 0)), int(record.get("snat_slices", 1))),
    )


def _sync(
    record: dict, nat: NatPolicy | None, directory: Path | None
) -> tuple[str | None, str | None]:
    """conntrackd's config and the steering table, for a gateway with a sync link."""
    if record.get("sync") is None or directory is None:
        return None, None
    link = conntrackd.SyncLink.from_record(record["sync"])
    steering = None
    if nat is not None and nat.pool4 is not None and nat.ports and link.peer.version == 4:
        steering = steer.render(
            nat.pool4, nat.ports, link.peer, link.interface, nat.upstream_interfaces
        )
    return conntrackd.render(link, directory), steering


def desired_state(
    name: str,
    view: HostState,
    observed: GatewayObserved,
    log_file: str | None = None,
    sync_dir: Path | None = None,
) -> DesiredGateway:
    """What gateway ``name`` should hold, given the controller's ``view`` and ``observed``.

    ``sync_dir``: where conntrackd's files go (None: this agent runs no state sync).
    """
    anycast = anycast_members(observed.learned) if observed.learned is not None else None
    try:
        routing = routing_from_state(
            view, name, log_file=log_file, fabric_ready=observed.fabric_ready
        )
    except NotRegistered:
        return DesiredGateway(sysctls={}, anycast=anycast)
    except (KeyError, TypeError, ValueError) as exc:
        return DesiredGateway(sysctls={}, anycast=anycast, errors=(f"registration: {exc}",))
    errors: list[str] = []
    nat = bird = sync = steering = None
    record = view.gateways[name]
    try:
        nat = _nat_policy(routing, record, observed)
    except ValueError as exc:
        errors.append(f"NAT: {exc}")
    try:
        bird = gateway_config(routing)
    except ValueError as exc:
        errors.append(f"BIRD: {exc}")
    try:
        sync, steering = _sync(record, nat, sync_dir)
    except (KeyError, TypeError, ValueError) as exc:
        errors.append(f"sync: {exc}")
    sysctls = {**FORWARDING, **(conntrackd.CONNTRACK_SYSCTLS if sync else {})}
    return DesiredGateway(
        routing,
        sysctls=sysctls,
        nat=nat,
        anycast=anycast,
        bird=bird,
        errors=tuple(errors),
        conntrackd=sync,
        steer=steering,
    )


def _covered(old: Iterable[str], new: Iterable[str]) -> tuple[str, ...]:
    """The prefixes (or ``P+`` patterns) of ``old`` that something in ``new`` still covers.

    Aggregates may merge or split (a /25 joins its sibling into a /24): an
    address that stays public is never withdrawn on the way.
    """
    nets = [ipaddress.ip_network(p.rstrip("+")) for p in new]
    return tuple(
        p
        for p in old
        if any(
            n.version == (o := ipaddress.ip_network(p.rstrip("+"))).version and o.subnet_of(n)  # type: ignore[arg-type]
            for n in nets
        )
    )


def _withdrawn(desired: DesiredGateway, observed: GatewayObserved) -> BirdConfig | None:
    """BIRD's config lowered to what stays, if anything it announces or imports goes."""
    last, routing = observed.bird_policy, desired.routing
    if last is None or routing is None or desired.bird is None:
        return None  # unknown (a restart): the full config settles it
    lowered = GatewayDesired(
        public=_covered(last.public, routing.desired.public),
        private=routing.desired.private,
        fabric_import=_covered(last.fabric_import, routing.desired.fabric_import),
    )
    if (lowered.public, lowered.fabric_import) == (last.public, last.fabric_import):
        return None
    return gateway_config(dataclasses.replace(routing, desired=lowered))


def _bird_changed(
    config: BirdConfig, observed: GatewayObserved, withdrawn: BirdConfig | None
) -> bool:
    if withdrawn is not None:
        return config != withdrawn
    return not observed.bird_running or render(config) != observed.bird_text


def _groups(members: dict[str, list[Member]]) -> dict[str, frozenset[Member]]:
    return {p: frozenset(m) for p, m in members.items()}


def plan(desired: DesiredGateway, observed: GatewayObserved) -> list[Op]:
    """The ordered operations that make ``observed`` ``desired`` (none if it is already)."""
    ops: list[Op] = []
    sysctls = tuple((k, v) for k, v in desired.sysctls.items() if observed.sysctls.get(k) != v)
    if sysctls:
        ops.append(SysctlSet(values=sysctls))
    withdrawn = _withdrawn(desired, observed)
    if withdrawn is not None:
        ops.append(BirdWithdraw(config=withdrawn))
    if desired.nat is not None and observed.nat != expected_listing(desired.nat):
        ops.append(NatTableSet(policy=desired.nat))
    if desired.routing is not None and (
        desired.conntrackd != observed.conntrackd_text
        or (digest_of(desired.steer) if desired.steer else None) != observed.steer_digest
    ):
        ops.append(SyncSet(conntrackd=desired.conntrackd, steer=desired.steer))
    if desired.anycast is not None and _groups(desired.anycast) != dict(observed.anycast):
        groups = tuple((p, tuple(m)) for p, m in sorted(desired.anycast.items()))
        ops.append(AnycastGroupsSet(groups=groups))
    if desired.bird is not None and _bird_changed(desired.bird, observed, withdrawn):
        ops.append(GatewayBirdConfigure(config=desired.bird))
    return ops
