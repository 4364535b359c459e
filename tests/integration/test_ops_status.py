"""``l3fabric status``, ``trace``, ``lab status`` and the agents' /metrics in a real lab:
healthy is exit 0; killing an agent makes both commands fail within seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from l3fabric import cli
from l3fabric.lab.credentials import admin_token_file
from l3fabric.lab.processes import l3fabric_argv

from .lab_fixtures import Lab, module_lab_factory, needs_root, wait_until  # noqa: F401

pytestmark = [pytest.mark.integration, needs_root]

TOPOLOGY = "racks: [{name: r1, hosts: 2, tor: false}]"


@pytest.fixture(scope="module")
def lab(module_lab_factory) -> Lab:  # noqa: F811
    lab = module_lab_factory(TOPOLOGY)
    lab.create_network("priv", cidrs=("10.1.0.0/24",))
    lab.boot("vm1", ["priv"], "r1-h1")
    return lab


def status(lab: Lab, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    token = str(admin_token_file(lab.state))
    code = cli.main(["status", "--api", lab.plan.api_url(), "--token-file", token, "-f", "json"])
    return code, json.loads(capsys.readouterr().out)


def test_status_healthy_then_trace_then_a_killed_agent_is_degraded(lab: Lab, capsys) -> None:
    wait_until(lambda: status(lab, capsys)[0] == 0, 30, "l3fabric status exits 0")
    code, report = status(lab, capsys)
    nodes = {n["name"]: n for n in report["nodes"]}
    assert set(nodes) == {"r1-h1", "r1-h2", "gw1"}
    assert nodes["r1-h1"]["endpoints"] == {"expected": 1, "programmed": 1}
    assert all(s["established"] for n in nodes.values() for s in n["sessions"])

    token = str(admin_token_file(lab.state))
    code = cli.main(["trace", "vm1", "--api", lab.plan.api_url(), "--token-file", token,
                     "-f", "json"])  # fmt: skip
    (entry,) = json.loads(capsys.readouterr().out)
    assert code == 0
    assert entry["address"] == lab.vm_ip("vm1") and entry["route"]["origin"] == "r1-h1"
    assert {g["gateway"] for g in entry["route"]["gateways"]} == {"gw1"}
    assert entry["reach"]["kind"] == "source NAT"

    pid = lab.state.pids()["agent-r1-h2"]
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_until(lambda: status(lab, capsys)[0] == 1, 15, "l3fabric status exits 1")
    detected = time.monotonic() - killed
    _, report = status(lab, capsys)
    with capsys.disabled():
        print(f"\ndead agent seen by l3fabric status after {detected:.1f} s")
    (down,) = [n for n in report["nodes"] if not n["healthy"]]
    assert down["name"] == "r1-h2" and "silent" in down["problems"][0]

    lab_status = subprocess.run(
        [*l3fabric_argv("lab", "status", "--lab", lab.name)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert lab_status.returncode == 1, lab_status.stdout + lab_status.stderr
    assert "r1-h2" in lab_status.stdout and "DEGRADED" in lab_status.stdout


def test_every_agent_serves_metrics_that_parse(lab: Lab) -> None:
    fetch = (
        "import urllib.request as u, sys; sys.stdout.write(u.urlopen(sys.argv[1]).read().decode())"
    )
    for node, port in (("r1-h1", 9180), ("gw1", 9181)):
        page = lab.exec(node, sys.executable, "-c", fetch, f"http://127.0.0.1:{port}/metrics")
        names = {f.name for f in text_string_to_metric_families(page.stdout)}
        assert {"l3fabric_agent_pass_seconds", "l3fabric_agent_bgp_sessions"} <= names, node
        ready = lab.exec(node, sys.executable, "-c", fetch, f"http://127.0.0.1:{port}/readyz")
        assert json.loads(ready.stdout)["status"] == "ready"
    assert "l3fabric_gateway_conntrack_entries" in page.stdout
