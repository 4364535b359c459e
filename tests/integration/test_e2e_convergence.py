"""End to end: how fast the fabric follows the API, and what port status says.

One lab for the module: two racks (r1: r1-h1, r1-h2; r2: r2-h1) behind
ToRs and a gateway. An observer VM sits in rack r2. Measured and bounded:
a deleted port's /32 and /128 leave every host, ToR and gateway kernel
within 2 s; a booted VM answers the observer in the other rack within 2 s
of the boot returning; its port turns ACTIVE within 3 s. A port bound to a
host that has no tap for it stays DOWN. ``pytest -s`` shows the numbers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from .lab_fixtures import Lab, module_lab_factory, needs_root, wait_until  # noqa: F401

pytestmark = [pytest.mark.integration, needs_root]

TOPOLOGY = """
racks:
  - {name: r1, hosts: 2}
  - {name: r2, hosts: 1}
internet: {clients: 0}
"""
OBSERVER = ("observer", "r2-h1")
WITHDRAW_S = 2.0
REACHABLE_S = 2.0
ACTIVE_S = 3.0


@pytest.fixture(scope="module")
def lab(module_lab_factory) -> Lab:  # noqa: F811
    lab = module_lab_factory(TOPOLOGY)
    lab.create_network("priv")
    lab.boot(OBSERVER[0], ["priv"], OBSERVER[1])
    for router in ("r1-tor", "r2-tor", "gw1"):
        lab.wait_established(router, with_hosts=True)
    return lab


@pytest.fixture
def vms(lab: Lab) -> Iterator[list[str]]:
    """Names the test boots go here; they are deleted after the test."""
    booted: list[str] = []
    yield booted
    for vm in booted:
        if vm in lab.state.vms():
            lab.delete(vm)


def prefixes(lab: Lab, vm: str) -> list[str]:
    return [f"{lab.vm_ip(vm, 4)}/32", f"{lab.vm_ip(vm, 6)}/128"]


def holders(lab: Lab, prefix: str) -> list[str]:
    """The fabric nodes whose kernel has a route for ``prefix``."""
    return [node for node in lab.fabric_nodes() if lab.has_route(node, prefix)]


def port_of(lab: Lab, vm: str) -> str:
    return lab.state.vms()[vm]["ports"][0]["id"]


def test_booted_vm_is_reachable_across_racks_within_2s(lab: Lab, vms: list[str]) -> None:
    vms.append("fresh")
    lab.boot("fresh", ["priv"], "r1-h2")
    booted_at, booted_mono = time.time(), time.monotonic()
    replied_at = lab.first_reply(OBSERVER[0], lab.vm_ip("fresh"), within=10)
    reachable = replied_at - booted_at
    everywhere = [
        wait_until(
            lambda p=prefix: len(holders(lab, p)) == len(lab.fabric_nodes()),
            timeout=10,
            what=f"{prefix} on every host, ToR and gateway",
        )
        for prefix in prefixes(lab, "fresh")
    ]
    routed = time.monotonic() - booted_mono
    print(
        f"\nboot -> first reply from the other rack: {reachable:.3f} s; "
        f"route in all {len(lab.fabric_nodes())} fabric kernels: {routed:.3f} s"
    )
    assert reachable < REACHABLE_S
    assert routed < REACHABLE_S, everywhere


def test_deleted_port_is_withdrawn_everywhere_within_2s(lab: Lab, vms: list[str]) -> None:
    vms.append("gone")
    lab.boot("gone", ["priv"], "r1-h1")
    for prefix in prefixes(lab, "gone"):
        wait_until(
            lambda p=prefix: len(holders(lab, p)) == len(lab.fabric_nodes()),
            timeout=10,
            what=f"{prefix} on every host, ToR and gateway",
        )
    lab.first_reply(OBSERVER[0], lab.vm_ip("gone"), within=5)

    # The API delete alone, the VM and its tap still plugged in: the agent must withdraw.
    started = time.monotonic()
    with lab.client() as client:
        client.delete("ports", port_of(lab, "gone"))
    for prefix in prefixes(lab, "gone"):
        wait_until(lambda p=prefix: not holders(lab, p), timeout=10, what=f"{prefix} withdrawn")
    withdrawn = time.monotonic() - started
    print(f"\nport delete -> /32 and /128 gone from all fabric kernels: {withdrawn:.3f} s")
    assert withdrawn < WITHDRAW_S
    done = lab.exec(OBSERVER[0], "ping", "-n", "-c1", "-W1", lab.vm_ip("gone"), check=False)
    assert done.returncode != 0, "the deleted port still answers"


def port_status(lab: Lab, port_id: str) -> str:
    with lab.client() as client:
        return client.get("ports", port_id)["status"]


def test_booted_port_turns_active_within_3s(lab: Lab, vms: list[str]) -> None:
    vms.append("status")
    lab.boot("status", ["priv"], "r1-h1")
    port = port_of(lab, "status")
    active = wait_until(
        lambda: port_status(lab, port) == "ACTIVE", timeout=10, what="port ACTIVE", interval=0.05
    )
    print(f"\nboot -> port ACTIVE: {active:.3f} s")
    assert active < ACTIVE_S


def test_port_without_a_tap_stays_down(lab: Lab, vms: list[str]) -> None:
    with lab.client() as client:
        network = client.list("networks", name="priv")[0]["id"]
        unplugged = client.create_port(
            network_id=network,
            name="unplugged",
            device_owner="compute:lab",
            **{"binding:host_id": "r1-h2"},
        )
    try:
        # A VM booted on the same host after it: once its port is ACTIVE, the
        # agent has made a pass that knew the unplugged port too.
        vms.append("witness")
        lab.boot("witness", ["priv"], "r1-h2")
        wait_until(
            lambda: port_status(lab, port_of(lab, "witness")) == "ACTIVE",
            timeout=10,
            what="witness port ACTIVE",
            interval=0.05,
        )
        assert port_status(lab, unplugged["id"]) == "DOWN"
        for fixed in unplugged["fixed_ips"]:
            address = fixed["ip_address"]
            assert holders(lab, f"{address}/{128 if ':' in address else 32}") == []
    finally:
        with lab.client() as client:
            client.delete("ports", unplugged["id"])
