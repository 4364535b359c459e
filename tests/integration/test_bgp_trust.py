"""End to end: the gateway believes no host: a hijacking host pulls no traffic.

One lab for the module: rack r1 without a ToR (hosts r1-h1 and r1-h2 peer
with the gateway directly, each in its own AS), every session TCP-MD5
signed (the lab's ``bgp_password``). The ``victim`` VM has a public address
on r1-h2; the ``attacker`` VM runs on r1-h1. The attacker's host then
announces, next to its real endpoint, the victim's /32, a foreign prefix, a
default route and an aggregate of the public subnet (added to its BIRD's
endpoint announcements while its agent is stopped, so it cannot put them
back). The internet client must still reach the victim, the gateway's
kernel must hold none of the hijacks, and the gateway's heartbeat must show
the refused announcements on r1-h1's session.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from l3fabric.routing.bird_control import BirdControl

from .lab_fixtures import Lab, module_lab_factory, needs_root, wait_until  # noqa: F401

pytestmark = [pytest.mark.integration, needs_root]

TOPOLOGY = """
racks:
  - {name: r1, hosts: 2, tor: false}
"""
ATTACKER_HOST, VICTIM_HOST = "r1-h1", "r1-h2"
FOREIGN = "198.18.0.0/24"
AGGREGATE = "203.0.113.0/25"
DEFAULT = "0.0.0.0/0"


def reaches(lab: Lab, node: str, address: str) -> bool:
    return lab.exec(node, "ping", "-n", "-c1", "-W1", address, check=False).returncode == 0


@pytest.fixture(scope="module")
def lab(module_lab_factory) -> Lab:  # noqa: F811
    lab = module_lab_factory(TOPOLOGY)
    with lab.client() as api:
        pub = api.create_network(name="pub", **{"router:external": True})
        api.create_subnet(network_id=pub["id"], cidr="203.0.113.0/24", ip_version=4)
    lab.boot("victim", ["pub"], VICTIM_HOST)
    lab.boot("attacker", ["pub"], ATTACKER_HOST)
    wait_until(lambda: reaches(lab, "client1", lab.vm_ip("victim")), 30, "victim from client")
    return lab


def peer_address(lab: Lab, host: str) -> str:
    """The IPv4 address of ``host`` on its link with the gateway."""
    return next(
        s.remote for s in lab.plan.sessions("gw1") if s.peer == host and ":" not in s.remote
    )


def rejected(lab: Lab, host: str) -> int:
    """What the gateway's last heartbeat says it refused from ``host`` (0: not reported yet)."""
    with lab.client() as api:
        gateway = api.request("GET", "/v1/gateways/gw1")
    return sum(s.get("rejected", 0) for s in gateway["bgp"] if s["name"] == f"p:{host}")


@pytest.fixture
def hijack(lab: Lab) -> Iterator[list[str]]:
    """r1-h1 announces what is not its own; its agent is stopped meanwhile, then restored."""
    victim = f"{lab.vm_ip('victim')}/32"
    hijacks = [victim, FOREIGN, DEFAULT, AGGREGATE]
    agent = lab.state.pids()[f"agent-{ATTACKER_HOST}"]
    conf = lab.state.agent_dir(ATTACKER_HOST) / "bird" / "bird.conf"
    bird = BirdControl(str(lab.state.agent_bird_ctl(ATTACKER_HOST)))
    original = conf.read_text()
    marker = "protocol static endpoints4 {\n\tipv4;\n"
    assert marker in original, original
    routes = "".join(f"\troute {p} blackhole;\n" for p in hijacks)
    os.kill(agent, signal.SIGSTOP)
    try:
        conf.write_text(original.replace(marker, marker + routes))
        bird.configure(str(conf))
        yield hijacks
    finally:
        conf.write_text(original)
        bird.configure(str(conf))
        os.kill(agent, signal.SIGCONT)


def test_a_hijacking_host_is_not_believed(lab: Lab, hijack: list[str]) -> None:
    victim = hijack[0]
    # Every hijack reached the gateway and was refused there, visibly.
    wait_until(
        lambda: rejected(lab, ATTACKER_HOST) >= len(hijack),
        15,
        "rejections in the gateway's heartbeat",
        interval=0.2,
    )
    assert rejected(lab, VICTIM_HOST) == 0
    # Nothing hijacked at the gateway's kernel: the victim's /32 still goes to its own host.
    host_address = peer_address(lab, VICTIM_HOST)
    route = lab.exec("gw1", "ip", "-4", "route", "show", "exact", victim).stdout
    assert f"via {host_address}" in route, route
    for prefix in (FOREIGN, AGGREGATE):
        assert not lab.has_route("gw1", prefix)
    attacker_address = peer_address(lab, ATTACKER_HOST)
    default = lab.exec("gw1", "ip", "-4", "route", "show", "exact", DEFAULT).stdout
    assert attacker_address not in default, default
    # The internet still reaches the real VM.
    assert reaches(lab, "client1", lab.vm_ip("victim"))


def test_sessions_are_signed_and_up(lab: Lab) -> None:
    """The lab's fabric sessions carry the fabric's password (TCP-MD5) and are established."""
    conf = (lab.state.agent_dir(VICTIM_HOST) / "bird" / "bird.conf").read_text()
    assert 'password "l3fabric-lab";' in conf
    with lab.client() as api:
        sessions = api.request("GET", "/v1/gateways/gw1")["bgp"]
    fabric = [s for s in sessions if s["name"].startswith("p:r1-h")]
    assert fabric and all(s["info"].startswith("Established") for s in fabric), sessions
