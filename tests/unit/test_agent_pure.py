"""Both agents' desired state and plan are pure: no I/O, no state kept between calls.

An audit hook (PEP 578) fails the test at any file, socket, process, ``os``
or sleep event while ``desired_state`` and ``plan`` run; a second run of the
same inputs after other calls gives the same result (nothing like the old
``AnycastServing``, which kept what ``lower()`` decided for ``converge()``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from l3fabric.agent import plan as host_plan
from l3fabric.agent.dhcp_config import ServedDhcp
from l3fabric.gateway import plan as gateway_plan

from .agent_ports import A, B, port
from .test_agent_plan import TCP, WEB_RULES, _converged, _group, _member, _tap, _view
from .test_dhcp_config import NETWORKS, S4, S6, subnets
from .test_gateway_plan import converged as gateway_converged
from .test_gateway_plan import learned
from .test_gateway_plan import view as gateway_view

# Audit events that are I/O (or waiting): a pure function raises none of them.
_IO_EVENTS = (
    "open",
    "socket.",
    "subprocess.",
    "os.",
    "shutil.",
    "ctypes.",
    "time.sleep",
    "urllib.",
)
_guard = threading.local()


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if getattr(_guard, "on", False) and event.startswith(_IO_EVENTS):
        _guard.seen.append((event, args))


sys.addaudithook(_hook)  # for the session: hooks cannot be removed; idle unless guarded


@contextlib.contextmanager
def no_io() -> Iterator[None]:
    _guard.on, _guard.seen = True, []
    try:
        yield
    finally:
        _guard.on = False
    assert _guard.seen == [], f"I/O in a pure step: {_guard.seen[:5]}"


def _pure(compute: Callable[[], object], *others: Callable[[], object]) -> None:
    """``compute`` does no I/O, and gives the same result again after ``others`` ran.

    ``others``: calls with other inputs, the last of them differing most from
    ``compute``'s (state kept from one call would show in the next).
    """
    first = compute()  # imports done, caches warm: what is left must be pure
    with no_io():
        again = compute()
        for other in others:
            other()
        last = compute()
    assert again == first and last == first


def _host_view(*ports: dict, members: tuple[str, ...] = (A, B)) -> Any:
    """h1's ports in a security group, both members of an anycast group with a TCP check."""
    view = _view(*ports, anycast={"id": "g1", "address": "10.1.0.80", "members": list(members), "health_check": TCP})  # fmt: skip
    web = WEB_RULES[0]["security_group_id"]
    return dataclasses.replace(
        view,
        ports={p: _served_by_dhcp(v, n, web) for n, (p, v) in enumerate(view.ports.items())},
        subnets=subnets(),
        networks=NETWORKS,
        security_groups={web: _group(web, *WEB_RULES)},
        members={
            p: _member(p, web, v["fixed_ips"][0]["ip_address"]) for p, v in view.ports.items()
        },
    )


def _served_by_dhcp(port: dict, n: int, group: str) -> dict:
    """``port`` in ``group``, with a MAC and its addresses in DHCP-enabled subnets."""
    fixed = [{**ip, "subnet_id": S6 if ":" in ip["ip_address"] else S4} for ip in port["fixed_ips"]]
    mac = f"fa:16:3e:00:01:{n:02x}"
    return {**port, "security_groups": [group], "fixed_ips": fixed, "mac_address": mac}


def test_the_host_agents_desired_state_and_plan_are_pure() -> None:
    view = _host_view(port(A, "10.1.0.2", "2001:db8:1::2"), port(B, "10.1.0.3"))
    taps = dict([_tap(A, 5, True), _tap(B, 6, True)])
    healthy = {("g1", A): True, ("g1", B): True}
    observed = _converged(view, taps=taps, bird_running=True, verdicts=healthy, dhcp=ServedDhcp())
    failing = dataclasses.replace(observed, verdicts={("g1", A): True, ("g1", B): False})
    fewer = _host_view(port(A, "10.1.0.2"), members=(A,))

    def one_pass(v: Any = view, o: Any = failing) -> tuple[object, list]:
        desired = host_plan.desired_state("h1", v, o)
        return desired, host_plan.plan(desired, o)

    desired, ops = one_pass()
    assert ops and desired.anycast.announce  # a pass with something to do, anycast included
    assert desired.dhcp is not None and len(desired.dhcp.lines) == 2  # DHCP decided here too
    dhcp_ops = host_plan.plan(desired, dataclasses.replace(failing, dhcp=ServedDhcp()))
    assert any(type(op).__name__.startswith("Dhcp") for op in dhcp_ops)
    _pure(lambda: host_plan.plan(desired, dataclasses.replace(failing, dhcp=ServedDhcp())))
    _pure(one_pass, lambda: one_pass(view, observed), lambda: one_pass(fewer, observed))
    # The incremental form too: from the last pass's state, one tap re-read.
    last = host_plan.desired_state("h1", fewer, observed)
    _pure(lambda: host_plan.desired_state("h1", view, observed, last, taps=[_tap(B, 6)[0]]))


def test_the_gateway_agents_desired_state_and_plan_are_pure() -> None:
    state = gateway_view()
    observed = gateway_converged(state, learned=learned(("172.16.0.1", 2), ("172.16.0.2", 1)))
    shrunk = dataclasses.replace(observed, learned=learned(("172.16.0.1", 2)))

    def one_pass(o: Any = shrunk) -> tuple[object, list]:
        desired = gateway_plan.desired_state("gw1", state, o)
        return desired, gateway_plan.plan(desired, o)

    assert one_pass()[1]  # the group shrinks: something to do
    _pure(one_pass, lambda: one_pass(observed))
