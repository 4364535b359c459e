"""The host agent's whole policy: what the host should hold, and the ordered steps to get there.

Pure functions, no I/O; unit-tested with plain data (tests/unit/test_agent_plan.py):

- ``desired_state(host, view, observed, previous, taps)``: from the
  controller's view (``HostState``) and what the host holds (``Observed``):
  endpoint routes, the anti-spoofing elements, the taps to prepare, anycast
  (probes, members served, counts announced), the BIRD config, sysctls,
  what dnsmasq serves (``dhcp_config.desired_dhcp``, per port).
  ``previous`` (the last pass's result) lets a pass convert only the port
  objects that changed (the watch replaces an object on every change, never
  edits it). With ``taps`` (an incremental pass: the taps it re-read) it
  starts from ``previous`` and recomputes only the ports that changed or
  whose tap did (``Touched``): a pass costs what the change costs, not what
  the host holds; anycast is recomputed from the groups, their members and
  the ports with address pairs only. It equals the full computation
  (tests/unit); where it could not be sure to (two ports sharing a tap or
  a prefix) it computes everything.
- ``plan(desired, observed)``: the operations (agent/ops.py) that turn
  ``observed`` into ``desired``, in an order that never exposes a half state
  (after an incremental ``desired_state`` only the keys it touched are
  compared: the rest is as the last pass left it):

  1. host sysctls and the 169.254.1.1 route; DHCP (a new port's hosts line
     is in place before its guard, tap and route: a VM may ask as soon as
     its tap is up, and the guard lets its DISCOVER through);
  2. guard: the security-group transaction (agent/sg_plan.py, conntrack
     pruned if it admits less), then anti-spoofing elements for new sources
     (a tap never forwards before its rules exist);
  3. taps: sysctls (IPv6 on only for ports that may send it), link up, fe80::1;
  4. withdraw: the announcements of endpoints that go (their blackholes in
     the announcement table) and BIRD's anycast counts that shrink, before
     the routes change;
  5. routes: endpoint routes replaced and deleted;
  6. anycast: probes, then resilient nexthop groups;
  7. announce: a blackhole for each newly routed endpoint (BIRD learns it,
     no configure), and BIRD's config if it changed (peers, anycast);
  8. guard: elements of taps that are gone, after their routes.

  A host that is already right gets no operation at all.
- ``after(desired, observed)``: the host as a successful pass leaves it, the
  ``Observed`` of the next incremental pass.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Collection, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from l3fabric.agent import anycast, sg_plan
from l3fabric.agent.bird import NotRegistered, host_bird_config
from l3fabric.agent.desired import Endpoint, endpoint_of, same_endpoint
from l3fabric.agent.dhcp_config import (
    FOLD_AT,
    DesiredDhcp,
    ServedDhcp,
    desired_dhcp,
    hosts_text,
)
from l3fabric.agent.identity import differing
from l3fabric.agent.observed import Observed, TapState
from l3fabric.agent.ops import (
    AnycastRoutesSet,
    BirdConfigure,
    BirdWithdraw,
    DhcpHostsAdd,
    DhcpInterface,
    DhcpServe,
    DhcpStop,
    EndpointsAnnounce,
    EndpointsWithdraw,
    GuardElements,
    GuardTable,
    LinkLocalGateway,
    Op,
    ProbesSet,
    RoutesSet,
    SysctlSet,
    TapsIpv6Off,
    TapsPrepare,
)
from l3fabric.client import HostState
from l3fabric.dataplane import nft
from l3fabric.dataplane.links import (
    IFF_UP,
    LinkInfo,
    every_interface,
    ipv6_off_path,
    needs_ipv6_off,
    tap_name,
    tap_ready,
    with_settings,
)
from l3fabric.dataplane.sysctl import HOST_SYSCTLS
from l3fabric.layered import Layered, finished
from l3fabric.routing.bird_config import AnycastRoute, BirdConfig, render


@dataclass(frozen=True)
class Touched:
    """What an incremental desired state recomputed: ``plan`` and ``after`` compare only these."""

    ports: frozenset[str] = frozenset()
    taps: frozenset[str] = frozenset()
    prefixes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class DesiredHost:
    """Everything one pass makes true on the host."""

    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)  # by port id
    routes: Mapping[str, str] = field(default_factory=dict)  # prefix -> tap
    guard: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # tap -> set elements
    taps: Mapping[str, bool] = field(default_factory=dict)  # tap to make ready -> IPv6 on it
    anycast: anycast.AnycastPlan = field(default_factory=anycast.AnycastPlan)
    sysctls: Mapping[str, str] = field(default_factory=lambda: dict(HOST_SYSCTLS))
    management: frozenset[str] = frozenset()
    bird: BirdConfig | None = None  # None: not registered yet, nothing to peer with
    security_groups: sg_plan.DesiredSg = field(default_factory=sg_plan.DesiredSg)
    dhcp: DesiredDhcp | None = None  # None: the host runs no DHCP server (--no-dhcp)
    errors: tuple[str, ...] = ()
    # The port objects ``endpoints`` were made from (for ``previous``).
    sources: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Ports that could not be converted: port id -> why (kept by incremental passes).
    invalid: Mapping[str, str] = field(default_factory=dict)
    # tap -> port id, prefix -> port id (routed or not), taps and prefixes
    # that more than one port claims, the ports with allowed address pairs.
    tap_ports: Mapping[str, str] = field(default_factory=dict)
    owners: Mapping[str, str] = field(default_factory=dict)
    shared: frozenset[str] = frozenset()
    pair_ports: frozenset[str] = frozenset()
    # None: computed from everything; else what this incremental state recomputed.
    touched: Touched | None = None


def changed_ports(
    view: HostState, previous: DesiredHost | None, hint: Collection[str] | None = None
) -> list[str]:
    """The ports that convert differently in ``view`` than in ``previous``: new and gone too.

    ``hint``: the only ports that can have changed since ``previous``'s view
    (None: every port is compared, by identity first).
    """
    return differing(view.ports, previous.sources if previous else {}, same_endpoint, hint)


def _endpoint(
    port_id: str, port: Mapping[str, Any], previous: DesiredHost | None
) -> Endpoint | str:
    """The endpoint of ``port`` (reused from ``previous`` if unchanged), or why it has none."""
    if previous is not None:
        known = previous.sources.get(port_id)
        old = previous.endpoints.get(port_id)
        if known is not None and old is not None and same_endpoint(known, port):
            # Unchanged (the watch replaced the object for a reported status).
            return old
    try:
        return endpoint_of(port)
    except (KeyError, TypeError, ValueError) as exc:
        # One bad port must not stop the host from programming the rest.
        return f"port {port_id}: {exc}"


def _sends_ipv6(guard: Iterable[str]) -> bool:
    """Whether a tap's guard admits an IPv6 source.

    It does for an IPv6 fixed IP or address pair, no port security (``::/0``)
    or a native member of an IPv6 anycast group. Such a tap gets IPv6 and
    fe80::1 (the VMs' IPv6 gateway); the others have IPv6 off.
    """
    return any(":" in source for source in guard)


def _routed(ep: Endpoint, observed: Observed) -> bool:
    return ep.admin_up and bool(ep.addresses) and ep.tap in observed.taps


@dataclass
class _Parts:
    """The per-port pieces of a desired state while it is computed.

    A full pass fills new dicts; an incremental one edits ``Draft``s of the
    last pass's maps (l3fabric/layered.py): only the entries it changes are new,
    the rest is shared, so ``previous`` stays as it was (pure) without a copy
    of every map.
    """

    endpoints: MutableMapping[str, Endpoint] = field(default_factory=dict)
    routes: MutableMapping[str, str] = field(default_factory=dict)
    guard: MutableMapping[str, tuple[str, ...]] = field(default_factory=dict)
    taps: MutableMapping[str, bool] = field(default_factory=dict)
    invalid: MutableMapping[str, str] = field(default_factory=dict)
    tap_ports: MutableMapping[str, str] = field(default_factory=dict)
    owners: MutableMapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, desired: DesiredHost) -> _Parts:
        """Drafts of the next versions of ``desired``'s pieces."""
        return cls(
            **{f.name: Layered.of(getattr(desired, f.name)).edit() for f in dataclasses.fields(cls)}
        )

    def finished(self) -> dict[str, Layered[str, Any]]:
        """The pieces as immutable mappings (a full pass's dicts are not copied)."""
        return {name: finished(part) for name, part in vars(self).items()}


@dataclass(frozen=True)
class _Anycast:
    """What anycast is computed from besides the parts (see ``_serve``)."""

    pair_ports: frozenset[str]
    bases: Mapping[str, tuple[str, ...]]
    served_before: Collection[str] = ()


def _assemble(
    host: str,
    view: HostState,
    observed: Observed,
    previous: DesiredHost | None,
    parts: _Parts,
    hint: Collection[str] | None,
    given: _Anycast,
    touched: Touched | None = None,
    **extra: Any,
) -> DesiredHost:
    """The desired state of ``parts``, with anycast, BIRD's config, security groups, DHCP and the errors.

    ``touched`` (an incremental state) gains the member taps whose guard changed.
    """
    errors = list(parts.invalid.values())
    served = _serve(host, view, observed, parts, given, errors)
    if touched is not None and previous is not None:
        guard, old = parts.guard, previous.guard
        changed = {t for t in given.bases if guard.get(t) != old.get(t)}
        touched = dataclasses.replace(touched, taps=touched.taps | changed)
    security_groups = sg_plan.desired(view, previous.security_groups if previous else None, hint)
    errors += security_groups.state.errors
    dhcp = None
    if observed.dhcp is not None:
        last = previous.dhcp if previous else None
        dhcp = desired_dhcp(host, view.ports, view.subnets, view.networks, last, hint)
        errors += (f"DHCP: {e}" for e in dhcp.errors)
    bird: BirdConfig | None = None
    try:
        bird = host_bird_config(view, served.announce)
    except NotRegistered:
        pass
    except ValueError as exc:
        errors.append(f"BIRD config: {exc}")
    return DesiredHost(
        anycast=served,
        management=observed.management,
        bird=bird,
        security_groups=security_groups,
        dhcp=dhcp,
        errors=tuple(errors),
        # The view is the pass's own copy and is not edited: kept, not copied.
        sources=view.ports,
        pair_ports=given.pair_ports,
        touched=touched,
        **parts.finished(),
        **extra,
    )


def desired_state(
    host: str,
    view: HostState,
    observed: Observed,
    previous: DesiredHost | None = None,
    taps: Collection[str] | None = None,
    ports: Collection[str] | None = None,
    hint: Collection[str] | None = None,
) -> DesiredHost:
    """What host ``host`` should hold, given the controller's ``view`` and ``observed``.

    A port is routed when it is administratively up, has addresses and its
    tap exists (the VM is plugged in); every bound port is guarded, plugged
    or not, so a tap that appears is guarded from its first packet.
    ``taps``: the taps an incremental pass re-read (None: a full pass);
    ``ports``: ``changed_ports(view, previous, hint)`` if the caller has it
    already; ``hint``: the only ports that can have changed since
    ``previous``'s view (the watch says which; None: all are compared).
    The result keeps ``view.ports`` (the next pass compares port objects by
    identity), so the caller must not edit that mapping afterwards: the agent
    passes each pass's own copy of the view (``HostStateWatcher.state()``).
    """
    if previous is not None and taps is not None:
        changed = changed_ports(view, previous, hint) if ports is None else ports
        found = _incremental(host, view, observed, previous, taps, changed, hint)
        if found is not None:
            return found
    return _full(host, view, observed, previous, hint)


def _full(
    host: str,
    view: HostState,
    observed: Observed,
    previous: DesiredHost | None,
    hint: Collection[str] | None,
) -> DesiredHost:
    d = _Parts()
    endpoints, taps, routes, guard = d.endpoints, d.taps, d.routes, d.guard
    for port_id, port in view.ports.items():
        ep = _endpoint(port_id, port, previous)
        if isinstance(ep, str):
            d.invalid[port_id] = ep
        else:
            endpoints[port_id] = ep
    tap_ports, owners = d.tap_ports, d.owners
    shared: set[str] = set()
    for port_id, ep in endpoints.items():
        for key, claims in ((ep.tap, tap_ports), *((p, owners) for p in ep.addresses)):
            if claims.setdefault(key, port_id) != port_id:
                shared.add(key)
        guard[ep.tap] = ep.guard
        if _routed(ep, observed):
            taps[ep.tap] = taps.get(ep.tap, False) or _sends_ipv6(ep.guard)
            for prefix in ep.addresses:
                routes[prefix] = ep.tap
    pair_ports = frozenset(p for p, port in view.ports.items() if port.get("allowed_address_pairs"))
    # ``guard`` holds each tap's own sources yet: the members' bases, read
    # before their group's are added.
    given = _Anycast(pair_ports, guard)
    return _assemble(host, view, observed, previous, d, hint, given, shared=frozenset(shared))


def _serve(
    host: str, view: HostState, observed: Observed, d: _Parts, given: _Anycast, errors: list[str]
) -> anycast.AnycastPlan:
    """Anycast from the groups, their members and the pair ports only; their taps' guard and IPv6.

    A native member may send from its group's address: its tap's guard is its
    own sources (``given.bases``, by tap) and the group's; a tap in
    ``given.served_before`` (the last pass's member taps) that is a member no
    more gets its own sources back.
    """
    bases = given.bases
    served = anycast.plan(
        host,
        view.ports,
        view.anycast.values(),
        d.taps,
        observed.verdicts,
        # A member without a verdict yet keeps what the kernel gives it: a
        # restarted agent changes nothing until a probe says otherwise.
        observed.anycast,
        endpoints=d.owners,
        pair_ports=given.pair_ports,
    )
    errors += served.errors
    for tap in sorted({*given.served_before, *served.sources}):
        if tap not in bases:
            continue
        base = bases[tap]
        d.guard[tap] = base
        extra = served.sources.get(tap)
        if tap in d.taps:
            # A member of an IPv6 group sends from its address and is a nexthop of it.
            d.taps[tap] = _sends_ipv6((*base, *(extra or ())))
        if extra:
            try:
                d.guard[tap] = nft.normalise_sources(tap, (*base, *extra))
            except ValueError as exc:
                errors.append(str(exc))
    return served


def _incremental(
    host: str,
    view: HostState,
    observed: Observed,
    previous: DesiredHost,
    changed_taps: Collection[str],
    changed: Collection[str],
    hint: Collection[str] | None,
) -> DesiredHost | None:
    """``previous`` with only the affected ports recomputed; None where only ``_full`` is sure."""
    ports = view.ports
    affected = set(changed)  # new, replaced and gone (changed_ports)
    affected.update(previous.tap_ports[t] for t in changed_taps if t in previous.tap_ports)
    d = _Parts.of(previous)
    endpoints, routes, guard, taps = d.endpoints, d.routes, d.guard, d.taps
    invalid, tap_ports, owners = d.invalid, d.tap_ports, d.owners
    shared = previous.shared
    touched_taps = set(changed_taps)
    prefixes: set[str] = set()
    for port_id in affected:  # out with the old
        invalid.pop(port_id, None)
        old = endpoints.pop(port_id, None)
        if old is not None:
            if old.tap in shared or not shared.isdisjoint(old.addresses):
                return None  # it shares a tap or a prefix: the full order decides
            touched_taps.add(old.tap)
            prefixes.update(old.addresses)
            del tap_ports[old.tap], guard[old.tap]
            for prefix in old.addresses:
                del owners[prefix]
            taps.pop(old.tap, None)
            for prefix in old.addresses:
                if routes.get(prefix) == old.tap:
                    del routes[prefix]
    for port_id in affected:  # in with the new
        port = ports.get(port_id)
        if port is None:
            continue
        ep = _endpoint(port_id, port, previous)
        if isinstance(ep, str):
            invalid[port_id] = ep
            continue
        if ep.tap in tap_ports or any(p in owners for p in ep.addresses):
            return None  # two ports would share a tap or a prefix: the full order decides
        endpoints[port_id] = ep
        tap_ports[ep.tap] = port_id
        owners.update(dict.fromkeys(ep.addresses, port_id))
        guard[ep.tap] = ep.guard
        touched_taps.add(ep.tap)
        prefixes.update(ep.addresses)
        if _routed(ep, observed):
            taps[ep.tap] = _sends_ipv6(ep.guard)
            routes.update(dict.fromkeys(ep.addresses, ep.tap))
    # Anycast depends on the groups, their members, the pair ports, their taps
    # and verdicts, and which prefixes are endpoints: recomputed from those
    # alone (a few ports), not from every port of the host.
    pair_ports = previous.pair_ports - affected
    pair_ports |= {p for p in affected if p in ports and ports[p].get("allowed_address_pairs")}
    member_taps = {*previous.anycast.sources, *_member_taps(view)}
    if not shared.isdisjoint(member_taps):
        return None  # a member shares its tap: the full order decides its guard
    bases = {t: endpoints[tap_ports[t]].guard for t in member_taps if t in tap_ports}
    return _assemble(
        host,
        view,
        observed,
        previous,
        d,
        hint,
        _Anycast(pair_ports, bases, previous.anycast.sources),
        Touched(frozenset(affected), frozenset(touched_taps), frozenset(prefixes)),
        shared=shared,
    )


def _member_taps(view: HostState) -> set[str]:
    """The taps of every native group member in ``view`` (local or not: a superset is safe)."""
    return {tap_name(str(m)) for g in view.anycast.values() for m in g.get("members") or []}


def status_keys(desired: DesiredHost, failed_taps: Collection[str]) -> set[str] | None:
    """The ports whose status an incremental ``desired`` may change (None: a full one, any)."""
    touched = desired.touched
    if touched is None:
        return None
    return touched.ports | {desired.tap_ports[t] for t in failed_taps if t in desired.tap_ports}


def statuses(
    desired: DesiredHost, failed_taps: set[str], previous: Mapping[str, str] | None = None
) -> dict[str, str]:
    """ACTIVE for each up port whose tap is ready and routed, DOWN for the rest.

    ``previous``: the last pass's statuses; an incremental ``desired`` then
    updates only the ports it touched.
    """

    def status(ep: Endpoint) -> str:
        ok = ep.admin_up and ep.tap in desired.taps and ep.tap not in failed_taps
        return "ACTIVE" if ok else "DOWN"

    keys = status_keys(desired, failed_taps)
    if keys is None or previous is None:
        return {port_id: status(ep) for port_id, ep in desired.endpoints.items()}
    # ``previous`` itself if no status changed (the caller compares by identity
    # first); copied at the first status that differs.
    found = previous if isinstance(previous, dict) else dict(previous)
    unchanged = found
    for port_id in keys:
        ep = desired.endpoints.get(port_id)
        now = None if ep is None else status(ep)
        if found.get(port_id) != now:
            if found is unchanged:
                found = dict(unchanged)
            if now is None:
                del found[port_id]
            else:
                found[port_id] = now
    return found


@dataclass(frozen=True)
class EndpointCounts:
    """Ports up with their tap present (expected routed), and those ACTIVE (programmed)."""

    expected: int = 0
    programmed: int = 0


def _expected(desired: DesiredHost, port_id: str) -> bool:
    ep = desired.endpoints.get(port_id)
    return ep is not None and ep.admin_up and ep.tap in desired.taps


def endpoint_counts(
    desired: DesiredHost,
    statuses: Mapping[str, str],
    keys: Collection[str] | None = None,
    before: tuple[DesiredHost, Mapping[str, str], EndpointCounts] | None = None,
) -> EndpointCounts:
    """The counts of ``desired`` and its ``statuses``.

    ``keys``: the only ports whose endpoint or status can differ from
    ``before`` (the last pass's desired state, statuses and counts): then only
    they are counted again, not every port of the host (a heartbeat at 10,000
    ports counted 10,000 endpoints, ~4 ms holding the interpreter, right when
    the pass's announcement was on its way).
    """
    if keys is None or before is None:
        taps = desired.taps
        return EndpointCounts(
            expected=sum(1 for ep in desired.endpoints.values() if ep.admin_up and ep.tap in taps),
            programmed=operator.countOf(statuses.values(), "ACTIVE"),
        )
    old, old_statuses, counts = before
    expected, programmed = counts.expected, counts.programmed
    for port_id in keys:
        expected += _expected(desired, port_id) - _expected(old, port_id)
        programmed += (statuses.get(port_id) == "ACTIVE") - (old_statuses.get(port_id) == "ACTIVE")
    return EndpointCounts(expected, programmed)


def _guard_ops(desired: DesiredHost, observed: Observed) -> tuple[list[Op], list[Op]]:
    """Guard operations before the routes (new and changed sources) and after (taps gone)."""
    isolated = tuple(sorted(desired.management))
    found = observed.guard
    if (
        found is None
        or found.digest != nft.skeleton_digest(isolated)
        or found.rules != nft.expected_rules(isolated)
    ):
        allowed = tuple(sorted(desired.guard.items()))
        return [GuardTable(allowed=allowed, isolated=isolated)], []
    current, wanted = found.elements, desired.guard
    if desired.touched is not None:
        current = {t: current[t] for t in desired.touched.taps if t in current}
        wanted = {t: wanted[t] for t in desired.touched.taps if t in wanted}
    add, delete = nft.element_changes(current, wanted)
    # A tap's changed sources go in one transaction (interval elements may
    # overlap old ones); a tap that is no longer ours loses its rules last.
    gone = {(tap, p) for tap, p in delete if tap not in desired.guard}
    before = [GuardElements(add=tuple(add), delete=tuple(d for d in delete if d not in gone))]
    after = [GuardElements(delete=tuple(d for d in delete if d in gone))]
    return [o for o in before if o.size()], [o for o in after if o.size()]


def _still_ready(state: TapState, ipv6: bool) -> bool:
    """True if this agent prepared the tap and it is still so (IPv6 off is a later op's)."""
    return state.prepared and bool(state.info.flags & IFF_UP) and (state.gateway6 or not ipv6)


def _taps_op(
    desired: DesiredHost, observed: Observed, sysctls: tuple[tuple[str, str], ...]
) -> list[Op]:
    """The taps to prepare, with their settings as they are after the host ``sysctls``."""
    todo = []
    wanted = _scoped_taps(desired)
    forced = every_interface(sysctls)  # global forwarding, written first, reaches every tap
    for tap, ipv6 in wanted.items():
        state: TapState = observed.taps[tap]
        if _still_ready(state, ipv6):
            continue
        info = with_settings(tap, state.info, forced) if forced else state.info
        if not tap_ready(tap, info, ipv6, state.gateway6):
            todo.append((tap, info))
    ipv6_taps = frozenset(t for t, _ in todo if desired.taps[t])
    return [TapsPrepare(taps=tuple(sorted(todo)), ipv6=ipv6_taps)] if todo else []


def _ipv6_off_op(desired: DesiredHost, observed: Observed) -> list[Op]:
    """IPv6 off on the taps of ports that never send it and still have it on."""
    infos = {t: observed.taps[t].info for t, ipv6 in _scoped_taps(desired).items() if not ipv6}
    off = tuple((t, info.index) for t, info in sorted(infos.items()) if needs_ipv6_off(t, info))
    return [TapsIpv6Off(taps=off)] if off else []


def _scoped_taps(desired: DesiredHost) -> Mapping[str, bool]:
    """The taps to make ready that a pass compares: all, or those an incremental one touched."""
    if desired.touched is None:
        return desired.taps
    return {t: desired.taps[t] for t in desired.touched.taps if t in desired.taps}


def _withdrawn(desired: DesiredHost, observed: Observed) -> BirdConfig | None:
    """BIRD's config lowered to the anycast counts that stay, if any goes or shrinks."""
    last = observed.bird_config
    if last is None or desired.bird is None:
        # Unknown (a restart) or not registered: the announcement settles it.
        return None
    wanted = desired.anycast.announce
    lowered = tuple(
        # Typed prefixes in the config, their text as keys in the plan.
        AnycastRoute(r.prefix, min(r.healthy, wanted[str(r.prefix)]))
        for r in last.anycast_routes
        if str(r.prefix) in wanted
    )
    if lowered == last.anycast_routes:
        return None
    return dataclasses.replace(desired.bird, anycast_routes=lowered)


def _bird_changed(config: BirdConfig, observed: Observed, withdrawn: BirdConfig | None) -> bool:
    if withdrawn is not None:
        return config != withdrawn
    if not observed.bird_running:
        return True
    if observed.bird_text is not None:
        # A full pass compares the text BIRD runs with: a hand edit is undone.
        return render(config) != observed.bird_text
    return config != observed.bird_config


def _dhcp_ops(want: DesiredDhcp | None, have: ServedDhcp | None) -> list[Op]:
    """What makes dnsmasq serve ``want``: nothing if it does, one file per port if only
    ports were added, else the files rewritten and a reload (a restart if its subnets changed)."""
    if want is None or have is None:
        return []
    if want.empty:
        return [DhcpStop()] if have.running else []
    ops: list[Op] = []
    if have.addresses is None or set(have.addresses) != set(want.addresses):
        ops.append(DhcpInterface(addresses=want.addresses))
    restart = not have.running or have.main != want.main
    added: list[tuple[str, str]] = []
    if have.lines is None:  # read from the files (a full pass)
        rewrite = _rewrite_read(want.lines, have)
    else:  # as the last pass left it: compare the ports this state recomputed
        lines, wanted = have.lines, want.lines
        keys = want.touched if want.touched is not None else {*lines, *wanted}
        rewrite = False
        for port_id in sorted(keys):
            line, old = wanted.get(port_id), lines.get(port_id)
            if line == old:
                continue
            if old is None and line is not None:
                added.append((port_id, line))
            else:
                rewrite = True  # dnsmasq forgets a host only when it re-reads them all
    if restart or rewrite or have.opts != want.opts:
        ops.append(DhcpServe(main=want.main, opts=want.opts, lines=want.lines, restart=restart))
    elif added:
        ops.append(DhcpHostsAdd(entries=tuple(added)))
    return ops


def _rewrite_read(lines: Mapping[str, str], have: ServedDhcp) -> bool:
    """Whether the files as read (a full pass) differ from ``lines``, or the hosts
    directory is due to be folded into the hosts file (``FOLD_AT`` lines)."""
    pending = have.pending
    if len(pending) >= FOLD_AT or any(lines.get(p) != line for p, line in pending.items()):
        return True
    rest = {p: line for p, line in lines.items() if p not in pending} if pending else lines
    return hosts_text(rest) != have.hosts


def plan(desired: DesiredHost, observed: Observed) -> list[Op]:
    """The ordered operations that make ``observed`` ``desired`` (none if it is already)."""
    ops: list[Op] = []
    sysctls = tuple((k, v) for k, v in desired.sysctls.items() if observed.sysctls.get(k) != v)
    if sysctls:
        ops.append(SysctlSet(values=sysctls))
    if not observed.link_local_gateway:
        ops.append(LinkLocalGateway())
    # DHCP before any guard, tap or route: a VM may send its DISCOVER as soon
    # as its tap is up (the guard lets 0.0.0.0 -> 255.255.255.255:67 through
    # before the port's elements exist), and a port is ACTIVE only once served.
    ops += _dhcp_ops(desired.dhcp, observed.dhcp)
    # Security groups first: a new tap is filtered before it is routed (until
    # then it is in no tap set or verdict map, so dropped: fail closed).
    ops += sg_plan.ops(desired.security_groups, observed.security_groups, observed.sg_applied)
    guard_before, guard_after = _guard_ops(desired, observed)
    ops += guard_before
    ops += _taps_op(desired, observed, sysctls)
    # The prefixes to compare: all, or those an incremental desired state touched.
    if desired.touched is None:
        keys: Collection[str] = [
            *desired.routes,
            *(p for p in observed.routes if p not in desired.routes),
        ]
        stale = tuple(sorted(observed.announced - desired.routes.keys()))
    else:
        keys = sorted(desired.touched.prefixes)
        stale = tuple(p for p in keys if p in observed.announced and p not in desired.routes)
    if stale:
        ops.append(EndpointsWithdraw(prefixes=stale))
    withdrawn = _withdrawn(desired, observed)
    if withdrawn is not None:
        ops.append(BirdWithdraw(config=withdrawn))
    routed = [(p, desired.routes[p]) for p in keys if p in desired.routes]
    replace = tuple(
        (prefix, tap, observed.taps[tap].info.index)
        for prefix, tap in routed
        if observed.routes.get(prefix) != tap
    )
    delete = tuple(p for p in keys if p in observed.routes and p not in desired.routes)
    if replace or delete:
        ops.append(RoutesSet(replace=replace, delete=delete))
    targets = desired.anycast.probes
    if dict(observed.probes) != targets:
        ops.append(ProbesSet(targets=tuple(targets[k] for k in sorted(targets))))
    serving = {p: frozenset(t) for p, t in desired.anycast.serving.items()}
    if serving != dict(observed.anycast):
        fallback = withdrawn.anycast_routes if withdrawn else ()
        ops.append(
            AnycastRoutesSet(
                serving=tuple((p, tuple(t)) for p, t in desired.anycast.serving.items()),
                fallback=tuple((str(r.prefix), r.healthy) for r in fallback),
            )
        )
    new = tuple(sorted(p for p, _ in routed if p not in observed.announced))
    if new:
        ops.append(EndpointsAnnounce(add=new))
    if desired.bird is not None and _bird_changed(desired.bird, observed, withdrawn):
        ops.append(BirdConfigure(config=desired.bird))
    # Last: not needed to route, and on a host that already has thousands of
    # taps with IPv6 on, turning it off costs seconds (links.ipv6_off_path).
    ops += _ipv6_off_op(desired, observed)
    return ops + guard_after


def after(desired: DesiredHost, observed: Observed) -> Observed:
    """The host as a pass that applied ``plan(desired, observed)`` without a failure leaves it."""
    touched = desired.touched
    taps = Layered.of(observed.taps).edit()
    ready = desired.taps
    elements: Mapping[str, frozenset[str]] = (
        {tap: frozenset(p) for tap, p in desired.guard.items() if p} if touched is None else {}
    )
    if touched is not None:
        ready = {t: ready[t] for t in touched.taps if t in ready}
        kept = Layered.of(observed.guard.elements if observed.guard else {}).edit()
        for tap in touched.taps:
            kept.pop(tap, None)
            if desired.guard.get(tap):
                kept[tap] = frozenset(desired.guard[tap])
        elements = kept.done()
    for tap, ipv6 in ready.items():
        state = taps[tap]
        off = not ipv6 and needs_ipv6_off(tap, state.info)
        if off or not _still_ready(state, ipv6):
            conf = state.info.conf
            if off or ipv6:
                conf = {**conf, ipv6_off_path(tap): "0" if ipv6 else "1"}
            # Not dataclasses.replace (~15 us; 10,000 taps in a first pass).
            info = LinkInfo(state.info.index, state.info.flags | IFF_UP, conf)
            # fe80::1 is added with IPv6 on and goes with IPv6 off.
            taps[tap] = TapState(info, gateway6=ipv6 or (state.gateway6 and not off), prepared=True)
    isolated = tuple(sorted(desired.management))
    return dataclasses.replace(
        observed,
        taps=taps.done(),
        routes=desired.routes,  # immutable: shared
        guard=nft.Listing(
            nft.skeleton_digest(isolated),
            nft.expected_rules(isolated),
            elements,
        ),
        announced=desired.routes.keys(),
        anycast={p: frozenset(t) for p, t in desired.anycast.serving.items()},
        security_groups=sg_plan.applied(
            desired.security_groups, observed.security_groups, observed.sg_applied
        ),
        sg_applied=desired.security_groups.rendered,
        sysctls=dict(desired.sysctls),
        link_local_gateway=True,
        bird_running=observed.bird_running or desired.bird is not None,
        bird_config=desired.bird or observed.bird_config,
        bird_text=None,
        probes=dict(desired.anycast.probes),
        dhcp=_served(desired.dhcp, observed.dhcp),
    )


def _served(want: DesiredDhcp | None, have: ServedDhcp | None) -> ServedDhcp | None:
    """What dnsmasq serves after a pass that applied ``_dhcp_ops(want, have)``."""
    if want is None or have is None:
        return have
    if want.empty:
        return ServedDhcp()
    return ServedDhcp(True, want.main, want.opts, want.addresses, want.lines)
