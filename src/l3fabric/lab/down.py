"""``lab down``: remove everything a lab made, also after a crash or from another shell.

Works from what is on the machine, not from a clean record: pid files, a
scan of processes naming the lab's state directory, every process inside a
namespace with the lab's prefix, the namespaces themselves, the state
directory. Running it twice is harmless.
"""

from __future__ import annotations

import shutil

from l3fabric.lab import dhcp_client, netns
from l3fabric.lab.processes import stop_all
from l3fabric.lab.state import LabState, lab_names


def down(lab: str) -> list[str]:
    """Tear lab ``lab`` down; returns the namespaces that were deleted."""
    state = LabState(lab)
    if state.dir.exists():
        stop_all(state)
    namespaces = netns.lab_namespaces(lab)
    netns.delete(namespaces)
    dhcp_client.remove_lab_etc(lab)  # the VMs' /etc/netns/NS (lab boot --dhcp)
    shutil.rmtree(state.dir, ignore_errors=True)
    return namespaces


def all_labs() -> list[str]:
    """Labs with a state directory or a management namespace (every lab has one)."""
    names = set(lab_names())
    out = netns.run(["ip", "netns", "list"])
    for line in out.splitlines():
        ns = line.split()[0]
        if ns.startswith("l3f-") and ns.endswith("-mgmt"):
            names.add(ns[len("l3f-") : -len("-mgmt")])
    return sorted(names)
