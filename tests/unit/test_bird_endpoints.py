"""A host's endpoint announcements: learned from their own kernel table, exported to peers only."""

from __future__ import annotations

import re
import shutil
import subprocess
from ipaddress import ip_address

import pytest

from l3fabric.agent.bird import host_bird_config
from l3fabric.client import HostState
from l3fabric.dataplane.announce import ENDPOINTS_TABLE
from l3fabric.routing.bird_config import BgpPeer, BirdConfig, render

HOST = {"name": "h1", "router_id": "172.17.0.2", "address": "172.16.0.2", "asn": None, "peers": None}  # fmt: skip
GW = {"name": "gw", "router_id": "172.17.0.1", "asn": None, "fabric_addresses": ["172.16.0.0"]}
STATE = HostState(fabric={"asn": 65000}, host=HOST, gateways={"gw": GW})


def _block(text: str, head: str) -> list[str]:
    match = re.search(rf"^{re.escape(head)} \{{\n(.*?)^\}}", text, re.MULTILINE | re.DOTALL)
    assert match, f"no {head} in:\n{text}"
    return [line.strip() for line in match.group(1).splitlines()]


def test_endpoints_are_learned_from_their_table_into_their_own_bird_table() -> None:
    text = render(host_bird_config(STATE))
    for v, length in ((4, 32), (6, 128)):
        learner = _block(text, f"protocol kernel endpoints{v}")
        assert f"kernel table {ENDPOINTS_TABLE};" in learner and "learn;" in learner
        # Host-length blackholes only, preferred over BGP, never written back.
        assert f"import where net.len = {length} && dest = RTD_BLACKHOLE;" in learner
        assert "preference 200;" in learner and "export none;" in learner
        assert f"table endpoints_in{v};" in learner
        pipe = _block(text, f"protocol pipe endpoints{v}_pipe")
        assert pipe == [f"table master{v};", f"peer table endpoints_in{v};", "import all;", "export none;"]  # fmt: skip
        # The main table's kernel protocol never installs them (source RTS_INHERIT).
        kernel = [line for line in _block(text, f"protocol kernel kernel{v}") if "export" in line]
        assert kernel == [f'export where source = RTS_BGP || (source = RTS_STATIC && proto != "anycast{v}");']  # fmt: skip


def test_the_config_does_not_depend_on_the_endpoints() -> None:
    # One more endpoint changes no config: no configure per port.
    assert render(host_bird_config(STATE)) == render(host_bird_config(STATE, {}))
    assert "route 10." not in render(host_bird_config(STATE))


def test_a_plain_router_learns_nothing() -> None:
    text = render(BirdConfig(ip_address("10.0.0.1"), 65001))
    assert "learn;" not in text and "endpoints_in" not in text


@pytest.mark.parametrize("table", [0, 253, 254, 255, 256])
def test_the_endpoints_table_is_no_table_of_the_kernel(table: int) -> None:
    with pytest.raises(ValueError, match="endpoints table"):
        BirdConfig(ip_address("10.0.0.1"), 65001, endpoints_table=table)


@pytest.mark.skipif(shutil.which("bird") is None, reason="bird not installed")
def test_bird_parses_the_host_config(tmp_path) -> None:
    path = tmp_path / "bird.conf"
    config = BirdConfig(
        ip_address("10.0.0.1"),
        65001,
        peers=(BgpPeer("gw", ip_address("10.0.0.2"), 65000),),
        endpoints_table=ENDPOINTS_TABLE,
    )
    path.write_text(render(config))
    done = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True, timeout=10)  # fmt: skip
    assert done.returncode == 0, done.stderr
