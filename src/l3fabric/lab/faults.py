"""Failures the lab injects on purpose: a compute host cut off from the fabric.

A host's uplinks are its ends of its fabric links (to its ToR, or to each
gateway without one); the management link stays up, so its agent still
reaches the controller. Setting a veth end down takes the peer's carrier
down too, as a pulled cable would. ``host_cut_off`` always restores the
links, also when the block fails.

``host_silenced`` is the other kind of host failure, a host that hangs or
loses power behind a switch: its links stay up and it simply stops
answering (an nftables table in the host drops everything on its uplinks),
so only BFD can tell. It too is undone after the block.

Gateways fail the same two ways (``gateway_cut_off``, ``gateway_frozen``:
its BIRD and conntrackd stopped too, as on a hung machine).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

from l3fabric.gateway.conntrackd import Conntrackd
from l3fabric.lab import netns
from l3fabric.lab.errors import LabError
from l3fabric.lab.plan import Plan
from l3fabric.lab.state import LabState
from l3fabric.routing.bird_process import BirdProcess

SILENCE_TABLE = "l3f_lab_silence"


def uplinks(plan: Plan, host: str) -> list[str]:
    """The interface names of ``host``'s fabric links, in its own namespace."""
    node = plan.node(host)
    if node.role != "host":
        raise LabError(f"{host} is a {node.role}, not a compute host")
    return [link.b_ifname for link in plan.links if link.kind == "fabric" and link.b == host]


def set_uplinks(plan: Plan, host: str, up: bool) -> list[str]:
    """Set every uplink of ``host`` up or down in one ``ip -batch``; returns their names."""
    names = uplinks(plan, host)
    state = "up" if up else "down"
    netns.batch([f"link set {name} {state}" for name in names], plan.node(host).namespace)
    return names


@contextlib.contextmanager
def host_cut_off(plan: Plan, host: str) -> Iterator[list[str]]:
    """``host``'s uplinks down for the block (yields their names), up again after it."""
    names = set_uplinks(plan, host, up=False)
    try:
        yield names
    finally:
        set_uplinks(plan, host, up=True)


def silence_rules(ifnames: list[str]) -> str:
    """An nftables table dropping every packet in and out of ``ifnames``."""
    names = ", ".join(f'"{n}"' for n in ifnames)
    return (
        f"table inet {SILENCE_TABLE} {{\n"
        f"  chain i {{ type filter hook input priority -300; iifname {{ {names} }} drop; }}\n"
        f"  chain f {{ type filter hook forward priority -300; iifname {{ {names} }} drop; }}\n"
        f"  chain o {{ type filter hook output priority -300; oifname {{ {names} }} drop; }}\n"
        f"  chain p {{ type filter hook postrouting priority -300; oifname {{ {names} }} drop; }}\n"
        "}\n"
    )


@contextlib.contextmanager
def host_silenced(plan: Plan, host: str) -> Iterator[list[str]]:
    """``host`` drops everything on its uplinks for the block (links stay up), then recovers."""
    names = uplinks(plan, host)
    ns = plan.node(host).namespace
    netns.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], stdin=silence_rules(names))
    try:
        yield names
    finally:
        netns.run(["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", SILENCE_TABLE])


def gateway_links(plan: Plan, gateway: str) -> list[str]:
    """``gateway``'s data links in its namespace: fabric, upstream and sync (not management)."""
    if plan.node(gateway).role != "gateway":
        raise LabError(f"{gateway} is a {plan.node(gateway).role}, not a gateway")
    names = []
    for link in plan.links:
        if link.kind != "mgmt" and gateway in (link.a, link.b):
            names.append(link.a_ifname if link.a == gateway else link.b_ifname)
    return names


def _gateway_daemons(state: LabState, gateway: str) -> list[int]:
    """The pids of the gateway's BIRD and conntrackd (those that run)."""
    run_dir = state.agent_dir(gateway)
    pids = [BirdProcess("bird", run_dir=str(run_dir)).pid(), Conntrackd(run_dir).pid()]
    return [pid for pid in pids if pid is not None]


@contextlib.contextmanager
def gateway_frozen(plan: Plan, state: LabState, gateway: str) -> Iterator[list[str]]:
    """``gateway`` hangs for the block: every packet on its data links dropped, its
    BIRD and conntrackd stopped (SIGSTOP); links stay up, so only BFD can tell.
    Everything resumes after the block."""
    names = gateway_links(plan, gateway)
    ns = plan.node(gateway).namespace
    netns.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], stdin=silence_rules(names))
    stopped = _gateway_daemons(state, gateway)
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield names
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        netns.run(["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", SILENCE_TABLE])


@contextlib.contextmanager
def gateway_cut_off(plan: Plan, gateway: str) -> Iterator[list[str]]:
    """``gateway``'s data links down for the block (a pulled cable each), up again after."""
    names = gateway_links(plan, gateway)
    ns = plan.node(gateway).namespace
    netns.batch([f"link set {name} down" for name in names], ns)
    try:
        yield names
    finally:
        netns.batch([f"link set {name} up" for name in names], ns)
