"""End to end: security groups enforced on the hosts, driven with the real ``openstack`` CLI.

One lab for the module: hosts r1-h1 and r1-h2 under gateway gw1, one internet
client, one public dual-stack network. Groups and rules are made with the
``openstack`` CLI (no Keystone: ``--os-auth-type none``), VMs booted with
``lab boot --security-group``. Every check is a real TCP connection, ping or
UDP datagram between namespaces: what must pass gets 3 s (a loaded machine),
what must not gets 0.7 s; the "within 1 s" bounds are timed from the moment
the CLI command returned.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from l3fabric.lab import processes
from l3fabric.lab.credentials import admin_token
from l3fabric.osc import openstack_executable

from .lab_fixtures import Background, Lab, module_lab_factory, needs_root, wait_until  # noqa: F401
from .scripts import ECHO_SERVERS, LONG_CLIENT

pytestmark = [pytest.mark.integration, needs_root]

TOPOLOGY = """
racks: [{name: r1, hosts: 2, tor: false}]
internet: {clients: 1}
"""
PUBLIC = ("203.0.113.0/25", "2001:db8:100::/64")
PAIR = "203.0.113.120"  # an allowed address pair of f1's port
SPOOFED = "203.0.113.121"  # on no port: p1 sends from it once its port security is off
VMS = {  # name -> (host, groups)
    "d1": ("r1-h1", ["default"]),
    "d2": ("r1-h2", ["default"]),
    "w1": ("r1-h2", ["web"]),
    "f1": ("r1-h2", ["web"]),
    "g1": ("r1-h1", ["guarded"]),
    "e1": ("r1-h1", ["noegress"]),
    "c1": ("r1-h2", ["cut"]),
    "p1": ("r1-h1", ["default"]),
}
TCP_PORTS = (22, 80, 81, 5001, 5002)
UDP_PORT = 9999
MUST_PASS_S = 3.0
MUST_FAIL_S = 0.7
WITHIN_S = 1.0

# Prints the source of each datagram on the UDP port argv[1].
UDP_SOURCES = """
import socket, sys
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.bind(("::", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, peer = u.recvfrom(100)
    print("from", peer[0].removeprefix("::ffff:"), flush=True)
"""
CONNECT = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
if len(sys.argv) > 4:
    s.bind((sys.argv[4], 0))
s.settimeout(float(sys.argv[3]))
s.connect((sys.argv[1], int(sys.argv[2])))
s.sendall(b"x\\n")
assert s.recv(10) == b"x\\n"
"""


class Cli:
    """``openstack ... -f json`` against the lab's controller."""

    def __init__(self, url: str, token: str | None) -> None:
        # The lab runs --auth tokens: the admin token, in the environment as the demo does.
        auth = ["--os-auth-type", "admin_token"] if token else ["--os-auth-type", "none"]
        self.argv = [str(openstack_executable()), *auth, "--os-endpoint", url]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        if token:
            self.env["OS_TOKEN"] = token

    def __call__(self, *args: str) -> object:
        done = subprocess.run(
            [*self.argv, *args], capture_output=True, text=True, timeout=60, check=False,
            env=self.env,
        )  # fmt: skip
        assert done.returncode == 0, f"openstack {' '.join(args)}: {done.stderr}"
        return json.loads(done.stdout) if "-f" in args and done.stdout.strip() else None

    def many(self, *commands: tuple[str, ...]) -> list[object]:
        """Several commands at once (each is a 1-2 s process)."""
        with ThreadPoolExecutor(len(commands)) as pool:
            return list(pool.map(lambda c: self(*c), commands))


def connects(lab: Lab, vm: str, address: str, port: int, timeout: float, source: str = "") -> bool:
    argv = ["python3", "-c", CONNECT, address, str(port), str(timeout), *([source] if source else [])]  # fmt: skip
    return lab.exec(vm, *argv, check=False, timeout=timeout + 10).returncode == 0


def can(lab: Lab, vm: str, address: str, port: int, source: str = "") -> bool:
    """A connection succeeds within MUST_PASS_S (tried again until then)."""
    deadline = time.monotonic() + MUST_PASS_S
    while time.monotonic() < deadline:
        if connects(lab, vm, address, port, 0.5, source):
            return True
    return False


def cannot(lab: Lab, vm: str, address: str, port: int, source: str = "") -> bool:
    return not connects(lab, vm, address, port, MUST_FAIL_S, source)


def pings(lab: Lab, vm: str, address: str, wait: float = MUST_FAIL_S) -> bool:
    return lab.exec(vm, "ping", "-c1", f"-W{wait}", address, check=False).returncode == 0


def until(predicate, within: float, what: str) -> float:  # type: ignore[no-untyped-def]
    """Seconds until ``predicate`` holds (AssertionError after 3 s, so a slow one is shown)."""
    took = wait_until(predicate, MUST_PASS_S, what, interval=0.01)
    assert took < within, f"{what}: took {took:.2f} s, not within {within} s"
    return took


def port_name(vm: str) -> str:
    return f"{vm}-eth0"  # lab boot names a VM's ports <vm>-eth<i>


@pytest.fixture(scope="module")
def cli(lab: Lab) -> Cli:
    return Cli(lab.plan.api_url(), admin_token(lab.name))


@pytest.fixture(scope="module")
def lab(module_lab_factory) -> Iterator[Lab]:  # noqa: F811
    lab = module_lab_factory(TOPOLOGY)
    cli = Cli(lab.plan.api_url(), admin_token(lab.name))
    with lab.client() as api:
        pub = api.create_network(name="pub", **{"router:external": True})
        for cidr in PUBLIC:
            api.create_subnet(network_id=pub["id"], cidr=cidr, ip_version=6 if ":" in cidr else 4)
    group = ("security", "group", "create", "-f", "json")
    cli.many(*((*group, name) for name in ("web", "friends", "guarded", "noegress", "cut")))
    rule = ("security", "group", "rule", "create", "-f", "json")
    cli.many(
        (*rule, "web", "--protocol", "tcp", "--dst-port", "80"),
        (*rule, "web", "--ethertype", "IPv6", "--protocol", "tcp", "--dst-port", "80"),
        (*rule, "guarded", "--protocol", "tcp", "--dst-port", "81", "--remote-group", "friends"),
        (*rule, "noegress", "--protocol", "any"),
        (*rule, "cut", "--protocol", "tcp", "--dst-port", "5001", "--description", "only"),
        (*rule, "cut", "--protocol", "tcp", "--dst-port", "5002", "--description", "one"),
        (*rule, "cut", "--protocol", "tcp", "--dst-port", "5002:5003", "--description", "other"),
    )
    for vm, (host, groups) in VMS.items():
        lab.boot(vm, ["pub"], host, security_groups=groups)
    cli("port", "set", port_name("f1"), "--allowed-address", f"ip-address={PAIR}")
    lab.exec("f1", "ip", "addr", "add", f"{PAIR}/32", "dev", "eth0")
    lab.exec("p1", "ip", "addr", "add", f"{SPOOFED}/32", "dev", "eth0")
    yield lab


@pytest.fixture(scope="module", autouse=True)
def servers(lab: Lab) -> Iterator[dict[str, Background]]:
    """Echo servers on TCP_PORTS in every VM, and e1's UDP receiver ("udp"), for the module."""
    with contextlib.ExitStack() as stack:
        jobs = {
            vm: stack.enter_context(
                lab.background(vm, "python3", "-u", "-c", ECHO_SERVERS, *map(str, TCP_PORTS))
            )
            for vm in VMS
        }
        udp = ("python3", "-u", "-c", UDP_SOURCES, str(UDP_PORT))
        jobs["udp"] = stack.enter_context(lab.background("e1", *udp))
        for job in jobs.values():
            job.wait_for_line("ready", 10)
        wait_until(
            lambda: connects(lab, "d1", lab.vm_ip("d2"), 22, 0.5), 30, "d1 reaches d2 (lab ready)"
        )
        yield jobs


def test_default_group_members_reach_each_other_and_other_groups_only_by_their_rules(
    lab: Lab,
) -> None:
    d1, d2, w1 = lab.vm_ip("d1"), lab.vm_ip("d2"), lab.vm_ip("w1")
    assert can(lab, "d1", d2, 22) and can(lab, "d2", d1, 22)
    assert can(lab, "d1", lab.vm_ip("d2", 6), 22)
    assert pings(lab, "d2", d1, wait=MUST_PASS_S)
    # w1 is in "web" only: not a member of default, so it cannot reach them ...
    assert cannot(lab, "w1", d1, 22) and cannot(lab, "w1", d2, 80)
    assert not pings(lab, "w1", d2)
    # ... and they reach it only where web's rules allow: TCP 80.
    assert can(lab, "d1", w1, 80)
    assert cannot(lab, "d1", w1, 22) and not pings(lab, "d1", w1)


def test_tcp_80_from_anywhere_the_internet_and_other_vms_reach_port_80_only(lab: Lab) -> None:
    w1 = lab.vm_ip("w1")
    assert can(lab, "client1", w1, 80)
    assert cannot(lab, "client1", w1, 22)
    assert not pings(lab, "client1", w1)
    # A VM on the same host and one on the other host.
    assert can(lab, "f1", w1, 80) and can(lab, "g1", w1, 80)
    assert cannot(lab, "f1", w1, 22) and cannot(lab, "g1", w1, 22)
    assert can(lab, "d1", lab.vm_ip("w1", 6), 80) and cannot(lab, "d1", lab.vm_ip("w1", 6), 22)


def test_an_anycast_address_is_filtered_by_its_member_ports_groups(lab: Lab) -> None:
    # PAIR is in f1's allowed_address_pairs: routed to f1's tap as an anycast
    # address (docs/anycast.md). f1 is in web: TCP 80 only, for it too.
    assert can(lab, "client1", PAIR, 80)
    assert cannot(lab, "client1", PAIR, 22) and not pings(lab, "client1", PAIR)


def test_remote_group_admits_members_and_their_address_pairs_joining_and_leaving_within_1s(
    lab: Lab, cli: Cli
) -> None:
    g1 = lab.vm_ip("g1")
    assert cannot(lab, "f1", g1, 81) and cannot(lab, "f1", g1, 81, source=PAIR)
    cli("port", "set", port_name("f1"), "--security-group", "friends")
    joined = until(lambda: connects(lab, "f1", g1, 81, 0.3), WITHIN_S, "f1 let in")
    assert can(lab, "f1", g1, 81, source=PAIR)  # its allowed address pair is a member too
    assert cannot(lab, "w1", g1, 81)  # w1 is in web, not in friends
    cli("port", "unset", port_name("f1"), "--security-group", "friends")
    left = until(lambda: not connects(lab, "f1", g1, 81, 0.2), WITHIN_S, "f1 shut out")
    assert cannot(lab, "f1", g1, 81, source=PAIR)
    print(f"\nremote group: member in after {joined:.2f} s, out after {left:.2f} s")


def test_without_egress_rules_a_vm_starts_nothing_but_still_answers(lab: Lab, cli: Cli) -> None:
    w1 = lab.vm_ip("w1")
    assert can(lab, "e1", w1, 80)
    rules = cli("security", "group", "rule", "list", "noegress", "--egress", "-f", "json")
    assert isinstance(rules, list) and len(rules) == 2  # Neutron's egress rules of a new group
    cli("security", "group", "rule", "delete", *(r["ID"] for r in rules))
    until(lambda: not connects(lab, "e1", w1, 80, 0.2), WITHIN_S, "e1 cannot start a connection")
    assert not pings(lab, "e1", lab.vm_ip("d1"))
    # Stateful: inbound connections are answered (the replies are not new flows).
    assert can(lab, "d1", lab.vm_ip("e1"), 22) and can(lab, "client1", lab.vm_ip("e1"), 80)


def test_deleting_the_only_rule_cuts_an_established_connection_another_rule_keeps_one(
    lab: Lab, cli: Cli, tmp_path: Path
) -> None:
    c1 = lab.vm_ip("c1")
    flag = tmp_path / "go"
    rules = cli("security", "group", "rule", "list", "cut", "--ingress", "--long", "-f", "json")
    assert isinstance(rules, list)
    by_port = {r["Port Range"]: r["ID"] for r in rules}
    with (
        lab.background(
            "client1", "python3", "-u", "-c", LONG_CLIENT, c1, "5001", str(flag)
        ) as only,
        lab.background("d1", "python3", "-u", "-c", LONG_CLIENT, c1, "5002", str(flag)) as covered,
    ):
        assert only.wait_for_line("got", 10) == "got one"
        assert covered.wait_for_line("got", 10) == "got one"
        cli("security", "group", "rule", "delete", by_port["5001:5001"], by_port["5002:5002"])
        time.sleep(WITHIN_S)  # the bound: the next packet, 1 s after the delete returned
        flag.touch()
        assert only.finish(10).splitlines()[-1] == "lost"
        assert covered.finish(10).splitlines()[-1] == "got two"
    assert cannot(lab, "client1", c1, 5001) and can(lab, "client1", c1, 5002)


def test_ipv6_rules_icmpv6_and_neighbour_discovery(lab: Lab, cli: Cli) -> None:
    w1v6 = lab.vm_ip("w1", 6)
    # Members ping each other over IPv6: ND with the host (fe80::1) works too.
    assert pings(lab, "d1", lab.vm_ip("d2", 6), wait=MUST_PASS_S)
    assert not pings(lab, "d1", w1v6)
    cli("security", "group", "rule", "create", "web", "--ethertype", "IPv6", "--protocol", "ipv6-icmp")  # fmt: skip
    until(lambda: pings(lab, "d1", w1v6, wait=0.3), WITHIN_S, "ICMPv6 to w1 once allowed")
    assert not pings(lab, "d1", lab.vm_ip("w1"))  # the IPv6 rule admits no IPv4 ICMP
    neigh = lab.exec("w1", "ip", "-6", "neigh", "show", "fe80::1").stdout
    assert "lladdr" in neigh, neigh


def test_port_security_off_any_port_reachable_any_source_sent(
    lab: Lab, cli: Cli, servers: dict[str, Background]
) -> None:
    p1 = lab.vm_ip("p1")
    assert cannot(lab, "w1", p1, 22)
    cli("port", "set", port_name("p1"), "--no-security-group", "--disable-port-security")
    until(lambda: connects(lab, "w1", p1, 22, 0.3), WITHIN_S, "p1 open to a non-member")
    assert can(lab, "client1", p1, 5001)
    # No anti-spoofing: a datagram from an address on no port arrives (at e1, which
    # admits everything).
    send = (
        "import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        "s.bind((sys.argv[1], 0)); s.sendto(b'x', (sys.argv[2], int(sys.argv[3])))"
    )
    lab.exec("p1", "python3", "-c", send, SPOOFED, lab.vm_ip("e1"), str(UDP_PORT))
    assert servers["udp"].wait_for_line(f"from {SPOOFED}", 5)


def test_agent_restart_with_groups_in_place_changes_nothing_in_the_ruleset(lab: Lab) -> None:
    host = "r1-h1"

    def ruleset() -> str:
        # -a: rule handles, which a rewrite (flush and add) would change.
        return lab.exec(host, "nft", "-a", "list", "table", "inet", "l3fabric-sg").stdout

    before = ruleset()
    assert "sgi-" in before and "rg4-" in before
    pid = lab.state.pids()[f"agent-{host}"]
    subprocess.run(["kill", str(pid)], check=True)
    wait_until(lambda: not processes.alive(pid), 10, "the agent exits")
    restarted_at = time.time()
    processes.start_agent(lab.state, lab.plan, host)

    def passed() -> bool:
        with lab.client() as api:
            agent = api.get_host(host)["agent"]
        return agent.get("started_at", 0) >= restarted_at and agent.get("passes", 0) >= 1

    wait_until(passed, 15, "the restarted agent reports a pass", interval=0.1)
    assert ruleset() == before
    assert can(lab, "d2", lab.vm_ip("d1"), 22)
