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
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from l3fabric.lab import netns
from l3fabric.lab.errors import LabError
from l3fabric.lab.plan import Plan

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
