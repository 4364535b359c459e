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


def _protocol(conf: str, name: str) -> str:
    return conf.split(f"protocol bgp '{name}' {{")[1].split("\n}\n")[0]


def test_gateway_announces_only_the_public_aggregates_upstream() -> None:
    conf = render(PLAN, "gw1", "/dev/null")
    upstream = _protocol(conf, "up:internet")
    assert "import filter { if net.len = 0 then accept; reject; };" in upstream
    assert (
        "export filter { if source = RTS_STATIC && net ~ [ 203.0.113.0/24 ] then accept; reject; };"
        in upstream
    )
    # Fabric sessions (ToR and the ToR-less host) get everything.
    for peer in ("p:r1-tor", "p:r2-h1"):
        assert "export filter { accept; };" in _protocol(conf, peer)


def test_gateway_default_yields_to_the_learned_one() -> None:
    conf = render(PLAN, "gw1", "/dev/null")
    assert "protocol static static4_p50 {\n\tipv4 { preference 50; };" in conf
    assert "route 0.0.0.0/0 unreachable;" in conf.split("protocol static static4_p50")[1]


def test_only_routers_get_lab_configs() -> None:
    with pytest.raises(ValueError, match="only for routers"):
        render(PLAN, "r1-h1", "/dev/null")
