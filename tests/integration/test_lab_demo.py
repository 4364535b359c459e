"""``l3fabric lab demo`` (what ``make demo`` runs) passes every check on a real lab."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

from .lab_fixtures import needs_root

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dc.yaml"


@needs_root
def test_lab_demo_passes_and_cleans_up(tmp_path: Path) -> None:
    name = f"dm{secrets.token_hex(3)}"
    topology = tmp_path / "dc.yaml"
    text = EXAMPLE.read_text().replace("name: dc\n", f"name: {name}\n")
    # A port of its own, so a lab the user has up is not in the way.
    topology.write_text(text.replace("port: 9696", "port: 19696"))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "l3fabric.cli", "lab", "demo", str(topology)],
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        subprocess.run([sys.executable, "-m", "l3fabric.cli", "lab", "down", name], timeout=60)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "FAIL" not in done.stdout
    issue3 = ["same host", "same rack", "other rack", "ports ACTIVE", "dropped at", "management"]
    issue4 = [f"{n}. " for n in range(1, 8)]  # the external connectivity checks 1-7
    issue5 = ["anycast spread of 300", "anycast failover"]
    issue11 = ["port 22 filtered"]
    issue14 = ["4/4 TCP connections went on"]
    for check in issue3 + issue4 + issue5 + issue11 + issue14:
        assert check in done.stdout, check
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"l3f-{name}-" not in namespaces
