"""Lab veths that came up without carrier, brought down and up again.

Seen on the shared 2-core machine under load (about one ``lab up`` in five,
kernel 6.18): every management veth end in the mgmt namespace stayed
``NO-CARRIER`` (bridge port ``disabled``) although both ends were set up and
the node's end showed ``LOWER_UP``; no agent reached the controller ("No
route to host") and ``lab up`` failed waiting for the gateway's sessions. The
namespaces are configured concurrently (``netns.configure_many``), so both
ends of a veth go up at nearly the same moment. Setting a stuck end down
and up again, once its peer is up, gives both ends carrier.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from l3fabric.lab import netns
from l3fabric.lab.plan import Plan

# How long a link may look carrier-less after ``lab up`` set it up (the kernel's
# link state follows within about a second) before it counts as stuck.
SETTLE_S = 2.0


def stuck(namespace: str) -> list[str]:
    """The lab links in ``namespace`` that are set up but have no carrier."""
    out = netns.run(["ip", "-n", namespace, "-j", "link", "show"], timeout=10)
    return [
        link["ifname"]
        for link in json.loads(out or "[]")
        if link.get("ifname", "").startswith("l3f-")
        and {"UP", "NO-CARRIER"} <= set(link.get("flags", []))
    ]


def _stuck_in(namespaces: Iterable[str]) -> dict[str, list[str]]:
    found = {ns: stuck(ns) for ns in namespaces}
    return {ns: names for ns, names in found.items() if names}


def repair(plan: Plan, settle: float = SETTLE_S) -> dict[str, list[str]]:
    """Set every stuck lab link down and up again; what was stuck, by namespace.

    A link is stuck if it still has no carrier ``settle`` seconds on: the
    kernel updates the state ``ip`` shows asynchronously (within about a
    second), so a link that has just come up may look carrier-less a moment.
    """
    found = _stuck_in(n.namespace for n in plan.nodes.values())
    deadline = time.monotonic() + settle
    while found and time.monotonic() < deadline:
        time.sleep(0.1)
        found = _stuck_in(found)
    for ns, names in found.items():
        netns.batch([f"link set {n} down" for n in names] + [f"link set {n} up" for n in names], ns)
    return found
