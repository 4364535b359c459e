"""The lab's network: what `lab up` builds, that routes spread, and `lab down` after a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from l3fabric.lab import netns
from l3fabric.lab.state import LabState

from .lab_fixtures import Lab, lab_factory, needs_root  # noqa: F401  (lab_factory: a fixture)

pytestmark = [pytest.mark.integration, needs_root]

TWO_RACKS = """
racks:
  - {name: r1, hosts: 1}
  - {name: r2, hosts: 1}
internet: {clients: 1}
"""


def addresses(lab: Lab, node: str) -> dict[str, set[str]]:
    out = json.loads(lab.exec(node, "ip", "-j", "addr", "show").stdout)
    return {i["ifname"]: {f"{a['local']}/{a['prefixlen']}" for a in i["addr_info"]} for i in out}


def sysctl(lab: Lab, node: str, key: str) -> str:
    return lab.exec(node, "sysctl", "-n", key).stdout.strip()


def test_up_builds_what_the_file_says(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("racks: [{name: r1, hosts: 2, tor: false}]\ninternet: {clients: 1}", True)
    expected = {
        f"l3f-{lab.name}-{n}" for n in ("r1-h1", "r1-h2", "gw1", "internet", "client1", "mgmt")
    }
    assert set(netns.lab_namespaces(lab.name)) == expected
    for link in lab.plan.links:
        if link.kind == "mgmt":
            continue
        assert link.a4 in addresses(lab, link.a)[link.a_ifname]
        assert {link.b4, link.b6} <= addresses(lab, link.b)[link.b_ifname]
    host = lab.plan.nodes["r1-h2"]
    assert host.mgmt_address in addresses(lab, "r1-h2")["l3f-mgmt"]
    assert sysctl(lab, "r1-h1", "net.ipv4.ip_forward") == "1"
    assert sysctl(lab, "r1-h1", "net.ipv4.fib_multipath_hash_policy") == "1"
    assert sysctl(lab, "mgmt", "net.ipv4.ip_forward") == "0"
    # Nothing of the lab is in the root namespace.
    assert "l3f-" not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    # A host reaches the controller's management address, and only the mgmt network that way.
    lab.exec("r1-h1", "ping", "-c1", "-W2", lab.plan.controller_mgmt)
    assert "default" not in lab.exec("mgmt", "ip", "route").stdout


def test_bgp_sessions_come_up_and_routes_spread(lab_factory) -> None:  # noqa: F811
    lab = lab_factory(TWO_RACKS, network_only=True)
    for router in ("r1-tor", "r2-tor", "gw1", "internet"):
        lab.wait_established(router)
    tor1, tor2 = lab.plan.nodes["r1-tor"], lab.plan.nodes["r2-tor"]
    # r1-tor -> gw1 -> r2-tor: the reply crossed one router, so its TTL dropped by one.
    out = lab.exec("r1-tor", "ping", "-c1", "-W2", "-I", tor1.router_id, tor2.router_id).stdout
    assert "ttl=63" in out
    out = lab.exec(
        "r1-tor", "ping", "-6", "-c1", "-W2", "-I", tor1.loopback6, tor2.loopback6
    ).stdout
    assert "ttl=63" in out
    # The ToRs learned the gateway's default route; the internet only the public aggregate.
    assert "default via" in lab.exec("r1-tor", "ip", "route").stdout
    internet_routes = lab.exec("internet", "ip", "route").stdout
    upstream = next(lk for lk in lab.plan.links if lk.kind == "upstream")
    assert f"203.0.113.0/24 via {upstream.b4.split('/')[0]}" in internet_routes
    assert "172.16." not in internet_routes.replace("172.16.0.0/31", "")
    # A client reaching into the public range is answered by the gateway (unreachable).
    out = lab.exec("client1", "ping", "-c1", "-W2", "203.0.113.9", check=False).stdout
    assert f"From {upstream.b4.split('/')[0]}" in out and "Unreachable" in out
    # ... and the gateway's upstream address is one router away from a client.
    assert "ttl=63" in lab.exec("client1", "ping", "-c1", "-W2", upstream.b4.split("/")[0]).stdout


def test_down_removes_everything_after_a_crash(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("racks: [{name: r1, hosts: 1}]", network_only=True)
    state = LabState(lab.name)
    # The crash: BIRDs die, a stray process runs in a namespace, the pid files are lost.
    for pid in state.pids().values():
        os.kill(pid, signal.SIGKILL)
    stray = subprocess.Popen(
        ["ip", "netns", "exec", lab.plan.nodes["r1-h1"].namespace, "sleep", "300"],
        start_new_session=True,
    )
    for path in (state.dir / "pids").iterdir():
        path.unlink()
    # `lab down` from another shell.
    cmd = [sys.executable, "-m", "l3fabric.cli", "lab", "down", lab.name]
    subprocess.run(cmd, check=True, timeout=60, capture_output=True)
    assert netns.lab_namespaces(lab.name) == []
    assert not state.dir.exists()
    deadline = time.monotonic() + 5
    while stray.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stray.poll() is not None
    # Idempotent.
    subprocess.run(cmd, check=True, timeout=60, capture_output=True)


def test_second_up_of_the_same_lab_is_refused(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("racks: [{name: r1, hosts: 1}]", network_only=True)
    from l3fabric.lab.errors import LabError
    from l3fabric.lab.topology import parse_topology
    from l3fabric.lab.up import up

    topo = parse_topology(f"name: {lab.name}\nracks: [{{name: r1, hosts: 1}}]")
    with pytest.raises(LabError, match="already up"):
        up(topo, network_only=True)
    assert len(netns.lab_namespaces(lab.name)) == len(lab.plan.nodes)
