"""The security-group part of the host agent's pass: desired state and operation, pure.

``desired(view)`` builds the host's ``SgState`` from the controller's view
(this host's ports with their groups and port security, every group with its
rules, the remote-group memberships of every port on every host) and renders
it; ``ops(desired, current)`` is the one ``SecurityGroupsApply`` (or none)
that turns the table ``current`` (read back by a full pass, or as the last
pass left it) into it: a small transaction, zero statements when equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from l3fabric.agent.ops import Op, SecurityGroupsApply
from l3fabric.client import HostState
from l3fabric.dataplane.sg_diff import SgListing, listing_of, transaction
from l3fabric.dataplane.sg_model import SgState, build_state
from l3fabric.dataplane.sg_render import MAP_IN, MAP_OUT, Rendered, render


@dataclass(frozen=True)
class DesiredSg:
    """The host's security groups: the model (for conntrack pruning) and its nft objects."""

    state: SgState = field(default_factory=SgState)
    rendered: Rendered = field(default_factory=lambda: render(SgState()))


def desired(view: HostState) -> DesiredSg:
    """What the ``inet l3fabric-sg`` table should hold for ``view`` (errors in ``state.errors``)."""
    state = build_state(view.security_groups.values(), view.ports.values(), view.member_addresses())
    return DesiredSg(state, render(state))


def ops(want: DesiredSg, current: SgListing | None) -> list[Op]:
    """The operation that makes the table ``current`` ``want`` (none if it already is)."""
    todo = transaction(want.rendered, current)
    if not todo.script:
        return []
    have = current.maps if current is not None and not todo.full else {}
    # Taps whose verdict changes: a new port's tap is blocked if this fails.
    taps = frozenset(
        tap
        for vmap in (MAP_IN, MAP_OUT)
        for tap, verdict in want.rendered.maps[vmap].items()
        if have.get(vmap, {}).get(tap) != verdict
    )
    return [
        SecurityGroupsApply(transaction=todo, rendered=want.rendered, state=want.state, taps=taps)
    ]


def applied(want: DesiredSg) -> SgListing:
    """The table as a successful ``ops`` leaves it (the next incremental pass's ``current``)."""
    return listing_of(want.rendered)
