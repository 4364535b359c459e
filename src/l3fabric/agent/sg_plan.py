"""The security-group part of the host agent's pass: desired state and operation, pure.

``desired(view)`` builds the host's ``SgState`` from the controller's view
(this host's ports with their groups and port security, every group with its
rules, the remote-group memberships of every port on every host) and renders
it; ``ops(desired, current)`` is the one ``SecurityGroupsApply`` (or none)
that turns the table ``current`` (read back by a full pass, or as the last
pass left it) into it: a small transaction, zero statements when equal.
"""

from __future__ import annotations

import dataclasses
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


def narrows(last: Rendered, new: Rendered) -> bool:
    """Whether going from ``last`` to ``new`` may admit less (conntrack must be pruned).

    A rule or jump added to a chain admits more; one removed, a set element or
    map entry removed or changed, or a chain deleted may admit less. Every
    chain's last rule is its seal (the digest), which always changes.
    """
    if any(name not in new.chains for name in last.chains):
        return True
    if any(
        not set(rules[:-1]) <= set(new.chains[name][:-1]) for name, rules in last.chains.items()
    ):
        return True
    if any(
        not set(elems) <= set(new.sets.get(name, ("", ()))[1])
        for name, (_, elems) in last.sets.items()
    ):
        return True
    return any(
        new.maps.get(vmap, {}).get(tap) != verdict
        for vmap, entries in last.maps.items()
        for tap, verdict in entries.items()
    )


def ops(want: DesiredSg, current: SgListing | None, last: Rendered | None = None) -> list[Op]:
    """The operation that makes the table ``current`` ``want`` (none if it already is).

    ``last``: what the previous pass applied, when ``current`` is known to be
    it (an incremental pass): a change that only admits more (a rule added, a
    member joining) then skips the conntrack pruning, which lists every
    tracked flow of the host.
    """
    todo = transaction(want.rendered, current)
    if not todo.script:
        return []
    if todo.narrowed and not todo.full and last is not None and not narrows(last, want.rendered):
        todo = dataclasses.replace(todo, narrowed=False)
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
