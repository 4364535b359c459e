"""``l3fabric demo`` end to end: a real server process driven by the real openstack CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.clients
def test_demo_runs_every_step_and_shows_the_port_active() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "l3fabric.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "$ openstack network create --external demo-public" in out
    assert "203.0.113.10" in out  # the port with the chosen address
    assert "10.1.0." in out  # the private port's address from IPAM
    assert "status up" in out  # the host registered and heartbeated
    assert "demo finished: every step succeeded" in out
