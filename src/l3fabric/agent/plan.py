"""The host agent's whole policy: what the host should hold, and the ordered steps to get there.

Pure functions, no I/O; unit-tested with plain data (tests/unit/test_agent_plan.py):

- ``desired_state(host, view, observed, previous)``: from the controller's
  view (``HostState``) and what the host holds (``Observed``): endpoint routes,
  the anti-spoofing elements, the taps to prepare, anycast (probes, members
  served, counts announced), the BIRD config, sysctls. ``previous`` (the last
  pass's result) lets an incremental pass convert only the port objects that
  changed: the watch replaces an object on every change, never edits it.
- ``plan(desired, observed)``: the operations (agent/ops.py) that turn
  ``observed`` into ``desired``, in an order that never exposes a half state:

  1. host sysctls and the 169.254.1.1 route;
  2. guard: the security-group transaction (agent/sg_plan.py, conntrack
     pruned if it admits less), then anti-spoofing elements for new sources
     (a tap never forwards before its rules exist);
  3. taps: sysctls, link up, fe80::1;
  4. withdraw: BIRD stops announcing what goes or shrinks (endpoints,
     anycast counts), before the routes change;
  5. routes: endpoint routes replaced and deleted;
  6. anycast: probes, then resilient nexthop groups;
  7. announce: BIRD announces exactly what the kernel now routes;
  8. guard: elements of taps that are gone, after their routes.

  A host that is already right gets no operation at all.
- ``after(desired, observed)``: the host as a successful pass leaves it, the
  ``Observed`` of the next incremental pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from l3fabric.agent import anycast, sg_plan
from l3fabric.agent.bird import NotRegistered, host_bird_config
from l3fabric.agent.desired import Endpoint, endpoint_of, same_endpoint
from l3fabric.agent.observed import Observed, TapState
from l3fabric.agent.ops import (
    AnycastRoutesSet,
    BirdConfigure,
    BirdWithdraw,
    GuardElements,
    GuardTable,
    LinkLocalGateway,
    Op,
    ProbesSet,
    RoutesSet,
    SysctlSet,
    TapsPrepare,
)
from l3fabric.client import HostState
from l3fabric.dataplane import nft
from l3fabric.dataplane.links import IFF_UP, tap_ready
from l3fabric.dataplane.sysctl import HOST_SYSCTLS
from l3fabric.routing.bird_config import AnycastRoute, BirdConfig, render


@dataclass(frozen=True)
class DesiredHost:
    """Everything one pass makes true on the host."""

    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)  # by port id
    routes: Mapping[str, str] = field(default_factory=dict)  # prefix -> tap
    guard: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # tap -> set elements
    taps: Mapping[str, bool] = field(default_factory=dict)  # tap to make ready -> needs fe80::1
    anycast: anycast.AnycastPlan = field(default_factory=anycast.AnycastPlan)
    sysctls: Mapping[str, str] = field(default_factory=lambda: dict(HOST_SYSCTLS))
    management: frozenset[str] = frozenset()
    bird: BirdConfig | None = None  # None: not registered yet, nothing to peer with
    security_groups: sg_plan.DesiredSg = field(default_factory=sg_plan.DesiredSg)
    errors: tuple[str, ...] = ()
    # The port objects ``endpoints`` were made from (for ``previous``).
    sources: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def changed_ports(view: HostState, previous: DesiredHost | None) -> list[str]:
    """The ports of ``view`` that convert differently than in ``previous`` (new ones too)."""
    known = previous.sources if previous else {}
    return [
        port_id
        for port_id, port in view.ports.items()
        if (old := known.get(port_id)) is None or not same_endpoint(old, port)
    ]


def _endpoints(
    view: HostState, previous: DesiredHost | None, errors: list[str]
) -> tuple[dict[str, Endpoint], dict[str, Mapping[str, Any]]]:
    old_sources = previous.sources if previous else {}
    old = previous.endpoints if previous else {}
    endpoints: dict[str, Endpoint] = {}
    sources: dict[str, Mapping[str, Any]] = {}
    for port_id, port in view.ports.items():
        sources[port_id] = port
        known = old_sources.get(port_id)
        if known is not None and port_id in old and same_endpoint(known, port):
            # Unchanged (the watch replaced the object for a reported status).
            endpoints[port_id] = old[port_id]
            continue
        try:
            endpoints[port_id] = endpoint_of(port)
        except (KeyError, TypeError, ValueError) as exc:
            # One bad port must not stop the host from programming the rest.
            errors.append(f"port {port_id}: {exc}")
    return endpoints, sources


def desired_state(
    host: str,
    view: HostState,
    observed: Observed,
    previous: DesiredHost | None = None,
) -> DesiredHost:
    """What host ``host`` should hold, given the controller's ``view`` and ``observed``.

    A port is routed when it is administratively up, has addresses and its
    tap exists (the VM is plugged in); every bound port is guarded, plugged
    or not, so a tap that appears is guarded from its first packet.
    """
    errors: list[str] = []
    endpoints, sources = _endpoints(view, previous, errors)
    taps: dict[str, bool] = {}
    routes: dict[str, str] = {}
    guard: dict[str, tuple[str, ...]] = {}
    for ep in endpoints.values():
        guard[ep.tap] = ep.guard
        if ep.admin_up and ep.addresses and ep.tap in observed.taps:
            taps[ep.tap] = taps.get(ep.tap, False) or any(":" in a for a in ep.addresses)
            for prefix in ep.addresses:
                routes[prefix] = ep.tap
    served = anycast.plan(
        host,
        view.ports,
        view.anycast.values(),
        set(taps),
        observed.verdicts,
        # A member without a verdict yet keeps what the kernel gives it: a
        # restarted agent changes nothing until a probe says otherwise.
        observed.anycast,
        endpoints={a for ep in endpoints.values() for a in ep.addresses},
    )
    errors += served.errors
    for tap, extra in served.sources.items():
        if tap in guard:
            try:
                guard[tap] = nft.normalise_sources(tap, (*guard[tap], *extra))
            except ValueError as exc:
                errors.append(str(exc))
    security_groups = sg_plan.desired(view)
    errors += security_groups.state.errors
    bird: BirdConfig | None = None
    try:
        bird = host_bird_config(view, served.announce, routes.keys())
    except NotRegistered:
        pass
    except ValueError as exc:
        errors.append(f"BIRD config: {exc}")
    return DesiredHost(
        endpoints=endpoints,
        routes=routes,
        guard=guard,
        taps=taps,
        anycast=served,
        management=observed.management,
        bird=bird,
        security_groups=security_groups,
        errors=tuple(errors),
        sources=sources,
    )


def statuses(desired: DesiredHost, failed_taps: set[str]) -> dict[str, str]:
    """ACTIVE for each up port whose tap is ready and routed, DOWN for the rest."""
    return {
        port_id: "ACTIVE"
        if ep.admin_up and ep.tap in desired.taps and ep.tap not in failed_taps
        else "DOWN"
        for port_id, ep in desired.endpoints.items()
    }


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
    add, delete = nft.element_changes(found.elements, desired.guard)
    # A tap's changed sources go in one transaction (interval elements may
    # overlap old ones); a tap that is no longer ours loses its rules last.
    gone = {(tap, p) for tap, p in delete if tap not in desired.guard}
    before = [GuardElements(add=tuple(add), delete=tuple(d for d in delete if d not in gone))]
    after = [GuardElements(delete=tuple(d for d in delete if d in gone))]
    return [o for o in before if o.size()], [o for o in after if o.size()]


def _taps_op(desired: DesiredHost, observed: Observed) -> list[Op]:
    todo = []
    for tap, ipv6 in desired.taps.items():
        state: TapState = observed.taps[tap]
        if state.prepared and state.info.flags & IFF_UP and (state.gateway6 or not ipv6):
            continue
        if not tap_ready(tap, state.info, ipv6, state.gateway6):
            todo.append((tap, state.info))
    ipv6_taps = frozenset(t for t, _ in todo if desired.taps[t])
    return [TapsPrepare(taps=tuple(sorted(todo)), ipv6=ipv6_taps)] if todo else []


def _withdrawn(desired: DesiredHost, observed: Observed) -> BirdConfig | None:
    """BIRD's config lowered to what stays, if anything it announces goes or shrinks."""
    last = observed.bird_config
    if last is None or desired.bird is None:
        # Unknown (a restart) or not registered: the announcement settles it.
        return None
    kept = tuple(p for p in last.endpoint_routes if p in desired.routes)
    wanted = desired.anycast.announce
    lowered = tuple(
        # Typed prefixes in the config, their text as keys in the plan.
        AnycastRoute(r.prefix, min(r.healthy, wanted[str(r.prefix)]))
        for r in last.anycast_routes
        if str(r.prefix) in wanted
    )
    if kept == last.endpoint_routes and lowered == last.anycast_routes:
        return None
    return dataclasses.replace(desired.bird, endpoint_routes=kept, anycast_routes=lowered)


def _bird_changed(config: BirdConfig, observed: Observed, withdrawn: BirdConfig | None) -> bool:
    if withdrawn is not None:
        return config != withdrawn
    if not observed.bird_running:
        return True
    if observed.bird_text is not None:
        # A full pass compares the text BIRD runs with: a hand edit is undone.
        return render(config) != observed.bird_text
    return config != observed.bird_config


def plan(desired: DesiredHost, observed: Observed) -> list[Op]:
    """The ordered operations that make ``observed`` ``desired`` (none if it is already)."""
    ops: list[Op] = []
    sysctls = tuple((k, v) for k, v in desired.sysctls.items() if observed.sysctls.get(k) != v)
    if sysctls:
        ops.append(SysctlSet(values=sysctls))
    if not observed.link_local_gateway:
        ops.append(LinkLocalGateway())
    # Security groups first: a new tap is filtered before it is routed (until
    # then it is in neither verdict map, so dropped: fail closed).
    ops += sg_plan.ops(desired.security_groups, observed.security_groups, observed.sg_applied)
    guard_before, guard_after = _guard_ops(desired, observed)
    ops += guard_before
    ops += _taps_op(desired, observed)
    withdrawn = _withdrawn(desired, observed)
    if withdrawn is not None:
        ops.append(BirdWithdraw(config=withdrawn))
    replace = tuple(
        (prefix, tap, observed.taps[tap].info.index)
        for prefix, tap in desired.routes.items()
        if observed.routes.get(prefix) != tap
    )
    delete = tuple(p for p in observed.routes if p not in desired.routes)
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
    if desired.bird is not None and _bird_changed(desired.bird, observed, withdrawn):
        ops.append(BirdConfigure(config=desired.bird))
    return ops + guard_after


def after(desired: DesiredHost, observed: Observed) -> Observed:
    """The host as a pass that applied ``plan(desired, observed)`` without a failure leaves it."""
    taps = dict(observed.taps)
    for tap, ipv6 in desired.taps.items():
        state = taps[tap]
        if not (state.prepared and state.info.flags & IFF_UP and (state.gateway6 or not ipv6)):
            info = dataclasses.replace(state.info, flags=state.info.flags | IFF_UP)
            taps[tap] = TapState(info, gateway6=state.gateway6 or ipv6, prepared=True)
    isolated = tuple(sorted(desired.management))
    return dataclasses.replace(
        observed,
        taps=taps,
        routes=dict(desired.routes),
        guard=nft.Listing(
            nft.skeleton_digest(isolated),
            nft.expected_rules(isolated),
            {tap: frozenset(p) for tap, p in desired.guard.items() if p},
        ),
        anycast={p: frozenset(t) for p, t in desired.anycast.serving.items()},
        security_groups=sg_plan.applied(desired.security_groups),
        sg_applied=desired.security_groups.rendered,
        sysctls=dict(desired.sysctls),
        link_local_gateway=True,
        bird_running=observed.bird_running or desired.bird is not None,
        bird_config=desired.bird or observed.bird_config,
        bird_text=None,
        probes=dict(desired.anycast.probes),
    )
