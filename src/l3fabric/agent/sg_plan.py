"""The security-group part of the host agent's pass: desired state and operation, pure.

``desired(view, previous)`` builds the host's ``SgState`` from the
controller's view (this host's ports with their groups and port security,
every group with its rules, the remote-group memberships of every port on
every host) and renders it, recomputing only the ports, groups and
memberships whose objects changed since ``previous``; ``ops(desired,
current)`` is the one ``SecurityGroupsApply`` (or none) that turns the table
``current`` (read back by a full pass, or as the last pass left it) into it:
a small transaction, zero statements when equal. After an incremental
``desired`` only what it changed is compared (docs/agent.md).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from l3fabric.agent.identity import differing
from l3fabric.agent.ops import Op, SecurityGroupsApply
from l3fabric.client import HostState
from l3fabric.dataplane.links import tap_name
from l3fabric.dataplane.sg_diff import Changed, SgListing, listing_of, transaction, update
from l3fabric.dataplane.sg_model import (
    SecurityGroup,
    SgPort,
    SgState,
    build_state,
    collapse,
    sg_group,
    sg_port,
)
from l3fabric.dataplane.sg_render import (
    MAP_IN,
    MAP_OUT,
    Rendered,
    base_chains,
    dedicated,
    group_chains,
    port_objects,
    remote_sets,
    render,
)
from l3fabric.layered import Layered
from l3fabric.refcount import acquire, release


@dataclass(frozen=True)
class DesiredSg:
    """The host's security groups: the model (for conntrack pruning) and its nft objects.

    The rest is what the next pass reuses: the objects of the view each piece
    was built from (compared by identity: the watch replaces objects), and,
    for an incremental state, what changed since ``base`` (the previous
    rendering).
    """

    state: SgState = field(default_factory=SgState)
    rendered: Rendered = field(default_factory=lambda: render(SgState()))
    ports: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # port id -> object
    taps: Mapping[str, str] = field(default_factory=dict)  # port id -> tap
    untapped: Mapping[str, str] = field(default_factory=dict)  # port id -> why it has no tap
    groups: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)
    group_errors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    members: Mapping[str, frozenset[str] | None] = field(default_factory=dict)
    uses: Mapping[str, int] = field(default_factory=dict)  # group -> ports of this host in it
    chain_uses: Mapping[str, int] = field(default_factory=dict)  # port chain -> ports using it
    changed: Changed | None = None
    base: Rendered | None = None


_EMPTY = DesiredSg()


def desired(
    view: HostState, previous: DesiredSg | None = None, hint: Collection[str] | None = None
) -> DesiredSg:
    """What the ``inet l3fabric-sg`` table should hold for ``view`` (errors in ``state.errors``).

    With ``previous`` (the last pass's result) only the ports whose object
    changed, the groups whose object changed and the memberships whose address
    set changed are computed again; the result equals a computation from
    scratch (tests/unit/test_sg_incremental.py), with ``changed`` saying what
    to compare. The result keeps ``view.ports`` (compared by identity next
    time), so the caller must not edit that mapping afterwards: the agent
    passes each pass's own copy of the view. ``hint``: the only ports that
    can have changed since ``previous``'s view (None: all are compared).
    """
    if previous is not None and previous.state.ports and not previous.ports:
        previous = None  # computed from scratch (a shared tap): nothing to reuse
    last = previous or _EMPTY
    found = _Builder(view, last, hint if previous is not None else None).build()
    if found is None:  # two ports share a tap: the full computation decides which
        state = build_state(
            view.security_groups.values(), view.ports.values(), view.member_addresses()
        )
        return DesiredSg(state, render(state))
    return found if previous is not None else dataclasses.replace(found, changed=None, base=None)


SG_FIELDS = ("id", "fixed_ips", "allowed_address_pairs", "security_groups", "port_security_enabled")


def same_sg_port(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """True if ``new`` is filtered as ``old`` is (cheap: identity first)."""
    return old is new or all(old.get(key) == new.get(key) for key in SG_FIELDS)


class _Builder:
    """One ``desired`` computation from a previous one."""

    def __init__(self, view: HostState, last: DesiredSg, hint: Collection[str] | None) -> None:
        self.view, self.last, self.hint = view, last, hint
        self.chains = dict(last.rendered.chains)
        # The verdict maps (an entry per tap) and the per-port maps below are
        # drafts of the last ones (l3fabric/layered.py): a pass copies what it changes.
        self.maps = {
            vmap: Layered.of(last.rendered.maps.get(vmap, {})).edit() for vmap in (MAP_IN, MAP_OUT)
        }
        self.dirty_chains: set[str] = set()
        self.dirty_taps: set[str] = set()
        self.dirty_sets: set[str] = set()

    def build(self) -> DesiredSg | None:
        view, last = self.view, self.last
        taps, sg_ports = Layered.of(last.taps).edit(), Layered.of(last.state.ports).edit()
        untapped = dict(last.untapped)
        uses, chain_uses = dict(last.uses), dict(last.chain_uses)
        # A reported status replaces the object too (10,000 after a first pass).
        changed = differing(view.ports, last.ports, same_sg_port, self.hint)
        for port_id in changed:  # out with the old
            untapped.pop(port_id, None)
            old = taps.pop(port_id, None)
            if old is not None:
                self._port_out(sg_ports.pop(old), uses, chain_uses)
        for port_id in changed:  # in with the new
            port = view.ports.get(port_id)
            if port is None:
                continue
            try:
                tap = tap_name(port["id"])
            except (KeyError, TypeError, ValueError) as exc:
                untapped[port_id] = f"port {port.get('id')!r}: {exc} (no tap, not filtered here)"
                continue
            if tap in sg_ports:
                return None
            taps[port_id] = tap
            sg_ports[tap] = sg_port(port, tap)
            self._port_in(sg_ports[tap], uses, chain_uses)
        groups, group_errors, sources = self._groups(uses)
        state_members, members = self._members(groups)
        errors = [untapped[p] for p in sorted(untapped)]
        errors += [e for g in sorted(groups) for e in group_errors[g]]
        state = SgState(groups, sg_ports.done(), state_members, tuple(errors))
        sets = self._sets(state)
        keys = self._dedicated()
        dirty = Changed(
            frozenset(self.dirty_chains), frozenset(self.dirty_sets), frozenset(self.dirty_taps)
        )
        return DesiredSg(
            state,
            Rendered(self.chains, sets, {vmap: m.done() for vmap, m in self.maps.items()}, keys),
            view.ports,  # the pass's own copy of the view, not edited: kept, not copied
            taps.done(),
            untapped,
            sources,
            group_errors,
            members,
            uses,
            chain_uses,
            dirty,
            last.rendered,
        )

    def _port_out(self, port: SgPort, uses: dict[str, int], chain_uses: dict[str, int]) -> None:
        chains, verdicts = port_objects(port)
        for name in chains:
            if release(chain_uses, name):  # the last port with these groups
                del self.chains[name]
                self.dirty_chains.add(name)
        for vmap in verdicts:
            del self.maps[vmap][port.tap]
        self.dirty_taps.add(port.tap)
        for group in port.groups:
            release(uses, group)

    def _port_in(self, port: SgPort, uses: dict[str, int], chain_uses: dict[str, int]) -> None:
        chains, verdicts = port_objects(port)
        for name, rules in chains.items():
            if acquire(chain_uses, name):  # the first port with these groups
                self.chains[name] = rules
                self.dirty_chains.add(name)
        for vmap, verdict in verdicts.items():
            self.maps[vmap][port.tap] = verdict
        self.dirty_taps.add(port.tap)
        for group in port.groups:
            acquire(uses, group)

    def _dedicated(self) -> tuple[str, ...]:
        """The pairs with tap sets (a scan of the chains only when a pair came or went)."""
        last = self.last.rendered.dedicated
        if not any(name.startswith("in-") for name in self.dirty_chains):
            return last
        keys = dedicated(self.chains)
        if keys != last:
            bases = base_chains(keys)
            self.chains.update(bases)
            self.dirty_chains.update(bases)
        return keys

    def _groups(
        self, uses: Mapping[str, int]
    ) -> tuple[dict[str, SecurityGroup], dict[str, tuple[str, ...]], dict[str, Any]]:
        """The groups this host's ports use: recomputed where the group's object changed."""
        last, known = self.last, self.view.security_groups
        groups: dict[str, SecurityGroup] = {}
        errors: dict[str, tuple[str, ...]] = {}
        sources: dict[str, Any] = {}
        for group_id in sorted(uses):
            obj = known.get(group_id)
            sources[group_id] = obj
            if group_id in last.groups and last.groups[group_id] is obj:
                groups[group_id] = last.state.groups[group_id]
                errors[group_id] = last.group_errors[group_id]
                continue
            found: list[str] = []
            groups[group_id] = sg_group(group_id, obj, {}, found)
            errors[group_id] = tuple(found)
        for group_id in last.state.groups.keys() | groups.keys():
            before, now = last.state.groups.get(group_id), groups.get(group_id)
            if before == now:
                continue
            stale = group_chains(before) if before else {}
            fresh = group_chains(now) if now else {}
            for name in stale.keys() - fresh.keys():
                del self.chains[name]
            self.chains.update(fresh)
            self.dirty_chains.update(stale.keys() | fresh.keys())
        return groups, errors, sources

    def _members(
        self, groups: Mapping[str, SecurityGroup]
    ) -> tuple[dict[str, tuple[str, ...]], dict[str, frozenset[str] | None]]:
        """The remote groups' member prefixes: collapsed again where their set changed."""
        last, index = self.last, self.view.member_addresses()
        remote = sorted(
            {r.remote_group for g in groups.values() for r in g.rules if r.remote_group}
        )
        state: dict[str, tuple[str, ...]] = {}
        sources: dict[str, frozenset[str] | None] = {}
        for group_id in remote:
            addresses = sources[group_id] = index.get(group_id)
            before = last.members.get(group_id)
            if group_id in last.members and before is addresses:
                state[group_id] = last.state.members[group_id]
            elif before and addresses and before <= addresses:
                # Members joined: collapse(collapse(A) + B) == collapse(A + B),
                # and the collapsed A is short when addresses are contiguous.
                joined = addresses - before
                state[group_id] = collapse((*last.state.members[group_id], *joined))
            else:
                state[group_id] = collapse(addresses or ())
        return state, sources

    def _sets(self, state: SgState) -> dict[str, tuple[str, tuple[str, ...]]]:
        last = self.last
        if state.members == last.state.members and state.groups == last.state.groups:
            return last.rendered.sets
        sets = remote_sets(state)
        before = last.rendered.sets
        self.dirty_sets = {n for n in sets.keys() | before.keys() if sets.get(n) != before.get(n)}
        return sets


def narrows(last: Rendered, new: Rendered, only: Changed | None = None) -> bool:
    """Whether going from ``last`` to ``new`` may admit less (conntrack must be pruned).

    A rule or jump added to a chain admits more; one removed, a set element
    removed, or a map entry removed or sent to a chain with fewer rules may
    admit less. A chain deleted is no longer reachable, so what reached it
    changed and is judged there (a tap that joins a group moves to the chain
    pair of its new groups, which holds every rule of the old pair: more).
    Every chain's last rule is its seal (the digest), which always changes.
    ``only``: what may differ (the rest is known equal).
    """
    chains = last.chains.keys() if only is None else only.chains & last.chains.keys()
    kept = [name for name in chains if name in new.chains]
    if any(not _rules(last, name) <= _rules(new, name) for name in kept):
        return True
    sets = last.sets.keys() if only is None else only.sets & last.sets.keys()
    if any(not _covered(last.sets[name][1], new.sets.get(name, ("", ()))[1]) for name in sets):
        return True
    return any(
        not _verdict_grows(last, new, verdict, new.maps.get(vmap, {}).get(tap))
        for vmap, entries in last.maps.items()
        for tap, verdict in _scoped(entries, only)
    )


def _covered(old: Iterable[str], new: Iterable[str]) -> bool:
    """Whether every element of ``old`` lies within an element of ``new``.

    Member sets hold merged prefixes: 10.0.0.0/32, then a member 10.0.0.1,
    is 10.0.0.0/31, which admits more. Compared as strings it looked like
    an element removed, and a port created beside another pruned conntrack
    (at 10,000 taps ~0.24 s, listing every address of the host).
    """
    have = set(new)
    for element in set(old) - have:
        try:
            net = ipaddress.ip_network(element, strict=False)
        except ValueError:
            return False
        if not any(str(net.supernet(new_prefix=p)) in have for p in range(net.prefixlen)):
            return False
    return True


def _rules(rendered: Rendered, chain: str) -> set[str]:
    """A chain's rules without its seal."""
    return set(rendered.chains[chain][:-1])


def _verdict_grows(last: Rendered, new: Rendered, before: str, after: str | None) -> bool:
    """Whether a map entry ``before`` -> ``after`` admits at least what it did."""
    if after == before or after == "accept":
        return True
    old, _, old_chain = before.partition("goto ")
    fresh, _, new_chain = (after or "").partition("goto ")
    return (
        not old
        and not fresh
        and old_chain in last.chains
        and new_chain in new.chains
        and _rules(last, old_chain) <= _rules(new, new_chain)
    )


def _scoped(entries: Mapping[str, str], only: Changed | None) -> list[tuple[str, str]]:
    if only is None:
        return list(entries.items())
    return [(tap, entries[tap]) for tap in only.taps if tap in entries]


def ops(want: DesiredSg, current: SgListing | None, last: Rendered | None = None) -> list[Op]:
    """The operation that makes the table ``current`` ``want`` (none if it already is).

    ``last``: what the previous pass applied, when ``current`` is known to be
    it (an incremental pass): a change that only admits more (a rule added, a
    member joining) then skips the conntrack pruning, which lists every
    tracked flow of the host. If ``want`` was computed from that pass, only
    what it changed is compared (the rest is as that pass left it); a full
    pass (``last`` None) compares everything, which repairs drift.
    """
    only = want.changed if last is not None and last is want.base else None
    todo = transaction(want.rendered, current, only)
    if not todo.script:
        return []
    if (
        todo.narrowed
        and not todo.full
        and last is not None
        and not narrows(last, want.rendered, only)
    ):
        todo = dataclasses.replace(todo, narrowed=False)
    have = current.maps if current is not None and not todo.full else {}
    # Taps whose verdict changes: a new port's tap is blocked if this fails.
    taps = frozenset(
        tap
        for vmap in (MAP_IN, MAP_OUT)
        for tap, verdict in _scoped(want.rendered.maps[vmap], None if todo.full else only)
        if have.get(vmap, {}).get(tap) != verdict
    )
    return [
        SecurityGroupsApply(transaction=todo, rendered=want.rendered, state=want.state, taps=taps)
    ]


def applied(
    want: DesiredSg, before: SgListing | None = None, last: Rendered | None = None
) -> SgListing:
    """The table as a successful ``ops`` leaves it (the next incremental pass's ``current``).

    ``before``: the table as the previous pass left it and ``last`` what that
    pass applied: if ``want`` was computed from it, only what changed is updated.
    """
    if want.changed is None or before is None or last is None or last is not want.base:
        return listing_of(want.rendered)
    return update(before, want.rendered, want.changed)
