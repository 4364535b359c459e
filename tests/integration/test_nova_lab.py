"""Nova compatibility in a lab: the metadata service every host runs for its
VMs, and live migration through binding-extended (``lab migrate``).

One lab for the module: rack r1 with two hosts (the migration's source and
destination), rack r2 with an observer VM, and the internet client. A flow
of pings from the client and from the observer to the migrating VM
measures how long after the activation the VM answers on its new host
(target: 1 s); the source host withdraws its route. ``pytest -s`` shows the
numbers.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from l3fabric.lab.migrate import migrate

from .lab_fixtures import Lab, module_lab_factory, needs_root, wait_until  # noqa: F401

pytestmark = [pytest.mark.integration, needs_root]

TOPOLOGY = """
racks:
  - {name: r1, hosts: 2}
  - {name: r2, hosts: 1}
"""
SOURCE, DESTINATION = "r1-h1", "r1-h2"
MOVE_S = 1.0
FLOW_S = 6.0
INTERVAL_S = 0.02
METADATA = "http://169.254.169.254"


@pytest.fixture(scope="module")
def lab(module_lab_factory) -> Lab:  # noqa: F811
    lab = module_lab_factory(TOPOLOGY)
    # Public: the internet reaches its VMs as they are (no NAT).
    net = lab.create_network("pub", ("203.0.113.0/24",))
    with lab.client() as api:
        api.update("networks", net["id"], {"router:external": True})
    for vm, host in (("mover", SOURCE), ("observer", "r2-h1")):
        lab.boot(vm, ["pub"], host)
    for node in ("client1", "observer"):
        lab.first_reply(node, lab.vm_ip("mover"), within=30)
    return lab


def curl(lab: Lab, vm: str, path: str) -> tuple[int, str]:
    done = lab.exec(
        vm, "curl", "-s", "-m", "3", "-w", "\n%{http_code}", f"{METADATA}{path}", check=False
    )
    body, _, code = done.stdout.rpartition("\n")
    return int(code or 0), body


def test_every_lab_vm_gets_its_metadata(lab: Lab) -> None:
    code, body = curl(lab, "mover", "/openstack/latest/meta_data.json")
    assert code == 200, body
    meta = json.loads(body)
    assert meta["uuid"] == "mover" and meta["hostname"] == "mover"
    assert curl(lab, "observer", "/latest/meta-data/instance-id") == (200, "observer")
    address = lab.vm_ip("observer")
    assert curl(lab, "observer", "/latest/meta-data/local-ipv4") == (200, address)
    assert curl(lab, "observer", "/latest/meta-data/public-ipv4") == (200, address)


def replies(output: str) -> list[float]:
    """The arrival times (``ping -D``) of the echo replies in ``output``."""
    return [float(t) for t in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", output, re.M)]


def tap_route(lab: Lab, node: str, address: str) -> bool:
    out = lab.exec(node, "ip", "-4", "route", "show", "exact", f"{address}/32").stdout
    return " dev tap" in out


def test_live_migration_moves_the_route_within_a_second(lab: Lab) -> None:
    address = lab.vm_ip("mover")
    count = str(int(FLOW_S / INTERVAL_S))
    ping = ("ping", "-n", "-D", "-i", str(INTERVAL_S), "-W", "1", "-c", count, address)
    with lab.background("client1", *ping) as internet, lab.background("observer", *ping) as vm:
        time.sleep(1.0)  # the flows run before the move
        record = migrate(lab.plan, lab.state, "mover", DESTINATION)
        activated = record["activated_at"]
        internet_out, vm_out = internet.finish(FLOW_S + 5), vm.finish(FLOW_S + 5)
    gaps = {}
    for who, out in (("internet", internet_out), ("vm", vm_out)):
        after = [t for t in replies(out) if t > activated]
        assert after, f"{who}: no reply after the activation:\n{out}"
        gaps[who] = after[0] - activated
    print(f"\nlive migration: first reply after activation {gaps}")
    assert max(gaps.values()) < MOVE_S, gaps
    assert tap_route(lab, DESTINATION, address)
    wait_until(lambda: not tap_route(lab, SOURCE, address), 2.0, "source withdraws its route")
    with lab.client() as api:
        (port,) = api.list("ports", device_id="mover")
        bindings = api.request("GET", f"/v2.0/ports/{port['id']}/bindings")["bindings"]
    assert port["binding:host_id"] == DESTINATION
    assert [(b["host"], b["status"]) for b in bindings] == [(DESTINATION, "ACTIVE")]
    wait_until(
        lambda: api_status(lab, port["id"]) == "ACTIVE", 5.0, "the port ACTIVE on its new host"
    )
    # Its metadata now comes from the destination host.
    assert curl(lab, "mover", "/latest/meta-data/instance-id") == (200, "mover")


def api_status(lab: Lab, port_id: str) -> str:
    with lab.client() as api:
        return str(api.get("ports", port_id)["status"])
