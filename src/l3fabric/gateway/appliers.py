"""The gateway's appliers: the NAT table's; the rest are shared or elsewhere.

Domains of the gateway's plan: ``host`` (agent/appliers.py HostApplier:
sysctls), ``nat`` (here), ``anycast`` (gateway/anycast.py AnycastSync, the
groups' only writer) and ``bird`` (agent/appliers.py BirdApplier).
"""

from __future__ import annotations

from l3fabric.agent.ops import OK, Op, Outcome
from l3fabric.gateway.nat import GatewayNat
from l3fabric.gateway.ops import NatTableSet


class NatApplier:
    """The NAT and inbound-shield table, replaced whole in one transaction."""

    def __init__(self, nat: GatewayNat) -> None:
        self.nat = nat

    def apply(self, op: Op) -> Outcome:
        assert isinstance(op, NatTableSet)
        self.nat.replace(op.policy)
        return OK
