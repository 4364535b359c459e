"""The gateway agent's own operations; the rest (sysctls, BIRD) are the host agent's (agent/ops.py).

They run through the same ``execute.run`` and ``Applier`` interface: ``NatTableSet``
(domain ``nat``), ``AnycastGroupsSet`` (domain ``anycast``, applied by
``gateway.anycast.AnycastSync``, the groups' only writer) and
``GatewayBirdConfigure``, which is left out when the NAT table could not be
put in place: BIRD never imports a private range the inbound shield does not
cover, nor announces a public one before its table is right.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from l3fabric.agent.ops import BirdConfigure, Blocked, Op, Outcome
from l3fabric.dataplane.nexthops import Member
from l3fabric.gateway.nat import NatPolicy


@dataclass(frozen=True)
class NatTableSet(Op):
    """The whole NAT and inbound-shield table, replaced in one transaction."""

    domain: ClassVar[str] = "nat"
    step: ClassVar[str] = "nat"
    policy: NatPolicy

    def block(self, outcome: Outcome, blocked: Blocked) -> None:
        if outcome.failed:
            blocked.steps.add(self.step)

    def size(self) -> int:
        return len(self.policy.private) + 1


@dataclass(frozen=True)
class AnycastGroupsSet(Op):
    """Every anycast prefix's resilient group: exactly these members (a change is in place)."""

    domain: ClassVar[str] = "anycast"
    step: ClassVar[str] = "anycast"
    groups: tuple[tuple[str, tuple[Member, ...]], ...]

    def size(self) -> int:
        return sum(len(m) for _, m in self.groups) or 1


@dataclass(frozen=True)
class SyncSet(Op):
    """The pair's state sync: conntrackd with exactly this config and the
    handshake steering table (each None: none)."""

    domain: ClassVar[str] = "sync"
    step: ClassVar[str] = "sync"
    conntrackd: str | None
    steer: str | None

    def size(self) -> int:
        return 1


@dataclass(frozen=True)
class GatewayBirdConfigure(BirdConfigure):
    """BIRD's full config, given only once the NAT table is in place."""

    def pruned(self, blocked: Blocked) -> Op | None:
        return None if NatTableSet.step in blocked.steps else self
