"""The gateway's appliers: the NAT table's and BIRD's; the rest are shared or elsewhere.

Domains of the gateway's plan: ``host`` (agent/appliers.py HostApplier:
sysctls), ``nat`` (here), ``sync`` (here: the pair's state sync), ``anycast`` (gateway/anycast.py AnycastSync, the
groups' only writer) and ``bird`` (here: agent/appliers.py BirdApplier, plus
origin validation's reloads).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from l3fabric.agent.appliers import BirdApplier
from l3fabric.agent.ops import OK, BirdConfigure, Op, Outcome
from l3fabric.gateway.conntrackd import Conntrackd
from l3fabric.gateway.nat import GatewayNat
from l3fabric.gateway.ops import NatTableSet, SyncSet
from l3fabric.gateway.steer import Steering
from l3fabric.routing.bird_config import Roa
from l3fabric.routing.bird_control import BirdControl, BirdError

log = logging.getLogger(__name__)


class NatApplier:
    """The NAT and inbound-shield table, replaced whole in one transaction."""

    def __init__(self, nat: GatewayNat) -> None:
        self.nat = nat

    def apply(self, op: Op) -> Outcome:
        assert isinstance(op, NatTableSet)
        self.nat.replace(op.policy)
        return OK


class SyncApplier:
    """The gateway pair's state sync: conntrackd (re)started with its config, or
    stopped, and the handshake steering table."""

    def __init__(self, conntrackd: Conntrackd, steering: Steering) -> None:
        self.conntrackd = conntrackd
        self.steering = steering

    def apply(self, op: Op) -> Outcome:
        assert isinstance(op, SyncSet)
        self.conntrackd.apply(op.conntrackd)
        self.steering.apply(op.steer)
        return OK


class GatewayBirdApplier(BirdApplier):
    """BIRD's config; when the ROA entries change, the origin-checked sessions are reloaded.

    BIRD 2.0.12 checks ``roa_check`` when a route arrives and never again: a
    host's route that reached the gateway (through a ToR) before its port's
    binding did stays filtered after the ROA entry appears, unless the
    session's routes are evaluated anew. ``reload in`` does that, from the
    routes the session keeps as received (``import table``: no route refresh
    from the peer); only sessions with an ``origin`` policy need it.
    """

    def __init__(self, converge: Callable[[str], object], control: BirdControl) -> None:
        super().__init__(converge, lambda: None)
        self._control = control
        self._roas: tuple[Roa, ...] | None = None  # None: unknown (first pass)

    def apply(self, op: Op) -> Outcome:
        outcome = super().apply(op)
        assert isinstance(op, BirdConfigure)
        if op.config.roas != self._roas:
            for peer in op.config.peers:
                if peer.import_policy.kind == "origin":
                    # A session that is not up has nothing to reload.
                    with contextlib.suppress(BirdError, OSError):
                        self._control.request(f"reload in '{peer.protocol}'")
                        log.info("origins changed: reloaded %s", peer.protocol)
            self._roas = op.config.roas
        return outcome
