"""``lab migrate VM HOST``: the lab plays Nova's live migration.

As Nova does it with Neutron's binding-extended API: for each port of the VM
an INACTIVE binding on the destination (``POST /v2.0/ports/{id}/bindings``),
the VM moves (here: its taps, the host ends of its veths, move from the
source host's namespace to the destination's; the VM keeps its addresses and
MACs), then each binding is activated (``PUT .../bindings/HOST/activate``),
which moves the port's route to the destination, and the source's binding,
now inactive, is deleted.
"""

from __future__ import annotations

import json
import time
from typing import Any

from l3fabric.client import ApiError
from l3fabric.lab import netns
from l3fabric.lab.credentials import lab_client
from l3fabric.lab.errors import LabError
from l3fabric.lab.plan import Plan
from l3fabric.lab.state import LabState


def migrate(plan: Plan, state: LabState, name: str, host: str) -> dict[str, Any]:
    """Move VM ``name`` to ``host``; returns its record with ``activated_at``
    (``time.time()`` when the last binding was activated)."""
    path = state.vm_file(name)
    if not path.exists():
        raise LabError(f"lab {plan.lab} has no VM {name}")
    record = json.loads(path.read_text())
    node = plan.nodes.get(host)
    if node is None or node.role != "host":
        hosts = ", ".join(n.name for n in plan.by_role("host"))
        raise LabError(f"migrate to {host}: not a compute host of lab {plan.lab} (hosts: {hosts})")
    source = record["host"]
    if source == host:
        raise LabError(f"VM {name} is on {host} already")
    ports = [p["id"] for p in record["ports"]]
    with lab_client(plan) as client:
        made: list[str] = []
        try:
            for port_id in ports:
                client.request(
                    "POST", f"/v2.0/ports/{port_id}/bindings", json={"binding": {"host": host}}
                )
                made.append(port_id)
        except ApiError as exc:
            for port_id in made:
                client.request("DELETE", f"/v2.0/ports/{port_id}/bindings/{host}")
            raise LabError(f"binding the ports of {name} to {host} failed: {exc}") from exc
        # The VM "moves": its taps go to the destination host, down until its agent takes them.
        target = node.namespace
        netns.batch(
            [f"link set {p['tap']} netns {target}" for p in record["ports"]],
            plan.node(source).namespace,
        )
        try:
            for port_id in ports:
                client.request("PUT", f"/v2.0/ports/{port_id}/bindings/{host}/activate")
            activated_at = time.time()
            for port_id in ports:
                client.request("DELETE", f"/v2.0/ports/{port_id}/bindings/{source}")
        except ApiError as exc:
            raise LabError(f"activating the bindings of {name} on {host} failed: {exc}") from exc
    record["host"] = host
    path.write_text(json.dumps(record, indent=1))
    return {**record, "activated_at": activated_at}
