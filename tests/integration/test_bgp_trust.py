"""End to end: the gateway believes no host: a hijacking host pulls no traffic.

One lab for the module: rack r1 without a ToR (hosts r1-h1 and r1-h2 peer
with the gateway directly), rack r2 with one (r2-h1 behind r2-tor), every
host in its own AS and every fabric session TCP-MD5 signed (the lab's
``bgp_password``). The ``victim`` VM has a public address on r1-h2; VMs on
r1-h1 and r2-h1 give those hosts an endpoint. Each attacking host then
announces, next to its real endpoint, the victim's /32, a foreign prefix, a
default route and an aggregate of the public subnet (a static protocol its
export filter passes, added to its BIRD while its agent is stopped, so it
cannot put them back). The internet client must still reach the victim, the gateway's
kernel must hold none of the hijacks, and the gateway's heartbeat must show
the refused announcements on the session they arrived on (r1-h1's own; the
ToR's for r2-h1, where origin validation refuses them).
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
  - {name: r2, hosts: 1}
"""
VICTIM_HOST = "r1-h2"
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
    lab.boot("attacker", ["pub"], "r1-h1")
    lab.boot("attacker2", ["pub"], "r2-h1")
    wait_until(lambda: reaches(lab, "client1", lab.vm_ip("victim")), 30, "victim from client")
    return lab


def peer_address(lab: Lab, host: str) -> str:
    """The IPv4 address of ``host`` on its link with the gateway."""
    return next(
        s.remote for s in lab.plan.sessions("gw1") if s.peer == host and ":" not in s.remote
    )


def rejected(lab: Lab, session: str) -> int:
    """What the gateway's last heartbeat says it refused on ``session`` (0: not reported yet)."""
    with lab.client() as api:
        gateway = api.request("GET", "/v1/gateways/gw1")
    return sum(s.get("rejected", 0) for s in gateway["bgp"] if s["name"] == session)


# (attacker host, the gateway's session its announcements arrive on): a host
# peering with the gateway (checked by session), one behind a ToR (checked
# by origin AS against the ROA table).
ATTACKERS = [("r1-h1", "p:r1-h1"), ("r2-h1", "p:r2-tor")]


@pytest.fixture(params=ATTACKERS, ids=["by-session", "by-origin-as"])
def hijack(lab: Lab, request: pytest.FixtureRequest) -> Iterator[tuple[str, str, list[str]]]:
    """A host announces what is not its own; its agent is stopped meanwhile, then restored."""
    host, session = request.param
    victim = f"{lab.vm_ip('victim')}/32"
    hijacks = [victim, FOREIGN, DEFAULT, AGGREGATE]
    agent = lab.state.pids()[f"agent-{host}"]
    conf = lab.state.agent_dir(host) / "bird" / "bird.conf"
    bird = BirdControl(str(lab.state.agent_bird_ctl(host)))
    original = conf.read_text()
    # The host's export filter passes its static protocol anycast4 (it serves
    # no anycast address here, so there is none yet): the hijacks go there.
    assert "protocol static anycast4" not in original, original
    routes = "".join(f"\troute {p} blackhole;\n" for p in hijacks)
    os.kill(agent, signal.SIGSTOP)
    try:
        conf.write_text(f"{original}\nprotocol static anycast4 {{\n\tipv4;\n{routes}}}\n")
        bird.configure(str(conf))
        yield host, session, hijacks
    finally:
        conf.write_text(original)
        bird.configure(str(conf))
        os.kill(agent, signal.SIGCONT)


def test_a_hijacking_host_is_not_believed(lab: Lab, hijack: tuple[str, str, list[str]]) -> None:
    _, session, hijacks = hijack
    victim = hijacks[0]
    # Every hijack reached the gateway and is refused there, visibly.
    wait_until(
        lambda: rejected(lab, session) >= len(hijacks),
        15,
        "rejections in the gateway's heartbeat",
        interval=0.2,
    )
    # Exactly the hijacks, held by the gateway's BIRD as filtered (never used).
    gateway = BirdControl(str(lab.state.agent_bird_ctl("gw1")))
    shown = gateway.request(f"show route filtered protocol '{session}'")
    assert {t.split()[0] for c, t in shown if c == 1007 and "unicast" in t} == set(hijacks)
    assert rejected(lab, f"p:{VICTIM_HOST}") == 0
    # Nothing hijacked at the gateway's kernel: the victim's /32 still goes to its own host.
    route = lab.exec("gw1", "ip", "-4", "route", "show", "exact", victim).stdout
    assert f"via {peer_address(lab, VICTIM_HOST)} " in route, route
    for prefix in (FOREIGN, AGGREGATE):
        assert not lab.has_route("gw1", prefix)
    default = lab.exec("gw1", "ip", "-4", "route", "show", "exact", DEFAULT).stdout
    assert "via 172.16." not in default, default  # the fabric's links: never a default from it
    # The internet still reaches the real VM.
    assert reaches(lab, "client1", lab.vm_ip("victim"))


def test_sessions_are_signed_and_up(lab: Lab) -> None:
    """The lab's fabric sessions carry the fabric's password, TCP-MD5 signed by the kernel."""
    conf = (lab.state.agent_dir(VICTIM_HOST) / "bird" / "bird.conf").read_text()
    assert 'password "l3fabric-lab";' in conf
    with lab.client() as api:
        sessions = api.request("GET", "/v1/gateways/gw1")["bgp"]
    fabric = [s for s in sessions if not s["name"].startswith("up:")]
    assert fabric and all(s["info"].startswith("Established") for s in fabric), sessions
    # A keepalive (every 3 s in the lab) on the victim host's session carries the MD5 option.
    address = peer_address(lab, VICTIM_HOST)
    capture = (
        "timeout",
        "10",
        "tcpdump",
        "-i",
        "any",
        "-l",
        "-nv",
        "-c1",
        "tcp port 179 and host",
        address,
    )
    with lab.background("gw1", *capture) as dump:
        line = dump.wait_for_line("md5", timeout=10)
    assert "md5" in line


def test_a_new_vm_behind_a_tor_is_believed_once_the_controller_says_so(lab: Lab) -> None:
    """Its route may reach the gateway before its binding does; it must not stay refused."""
    lab.boot("late", ["pub"], "r2-h1")
    late = f"{lab.vm_ip('late')}/32"
    wait_until(lambda: lab.has_route("gw1", late), 15, f"{late} in the gateway's kernel")
    wait_until(lambda: rejected(lab, "p:r2-tor") == 0, 10, "nothing refused from r2-tor")
    assert reaches(lab, "client1", lab.vm_ip("late"))
