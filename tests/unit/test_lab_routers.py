"""Router BIRD configs: BIRD itself parses them, and the gateway's policies are right."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from l3fabric.lab.plan import build_plan
from l3fabric.lab.routers import render
from l3fabric.lab.topology import parse_topology

PLAN = build_plan(
    parse_topology("name: dc\nracks: [{name: r1, hosts: 2}, {name: r2, hosts: 1, tor: false}]")
)


@pytest.mark.skipif(shutil.which("bird") is None, reason="bird2 is not installed")
@pytest.mark.parametrize("node", ["r1-tor", "gw1", "internet"])
def test_bird_accepts_the_config(node: str, tmp_path: Path) -> None:
    conf = tmp_path / "bird.conf"
    conf.write_text(render(PLAN, node, str(tmp_path / "bird.log")))
    done = subprocess.run(["bird", "-p", "-c", str(conf)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_gateway_announces_only_the_public_aggregates_upstream() -> None:
    conf = render(PLAN, "gw1", "/dev/null")
    assert "filter upstream_export4 { if net ~ [ 203.0.113.0/24 ] then accept; reject; }" in conf
    upstream = conf.split("protocol bgp bgp_internet_4 {")[1].split("}\n")[0]
    assert "import filter default_only; export filter upstream_export4;" in upstream
    # Fabric sessions (ToR and the ToR-less host) get everything.
    for peer in ("bgp_r1_tor_4", "bgp_r2_h1_4"):
        session = conf.split(f"protocol bgp {peer} {{")[1].split("}\n")[0]
        assert "ipv4 { import all; export all; }" in session


def test_gateway_default_yields_to_the_learned_one() -> None:
    conf = render(PLAN, "gw1", "/dev/null")
    assert "protocol static fabric_default4 {\n  ipv4 { preference 50; };" in conf


def test_only_routers_get_lab_configs() -> None:
    with pytest.raises(ValueError, match="only for routers"):
        render(PLAN, "r1-h1", "/dev/null")
