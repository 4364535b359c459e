"""Reusable lab fixtures for integration tests (root, real namespaces, real BIRD).

Import explicitly in a test module::

    from .lab_fixtures import lab_factory  # noqa: F401  (the fixture)

    def test_x(lab_factory):
        lab = lab_factory("racks: [{name: r1, hosts: 2}]")
        lab.exec("r1-h1", "ping", "-c1", "203.0.113.5")

Every lab gets a unique name and a free API port, and is torn down by the
fixture's finalizer, also when the test fails. ``module_lab_factory`` is the
same with module scope, for test modules that share one lab between tests.
``lab.background(node, *cmd)`` runs a command (a capture, a server, a long
ping) next to the test and always stops it; ``wait_until`` is the bounded
poll every wait uses.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
import yaml

from l3fabric.client import ApiError, ControllerUnavailable, FabricClient
from l3fabric.lab import bird, boot, routers
from l3fabric.lab.credentials import admin_credentials, lab_client
from l3fabric.lab.down import down
from l3fabric.lab.plan import ROUTER_ROLES, Plan
from l3fabric.lab.state import LabState
from l3fabric.lab.topology import parse_topology
from l3fabric.lab.up import up
from l3fabric.loopback import free_port
from l3fabric.routing.bird_control import ProtocolStatus

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("bird") is None or shutil.which("ip") is None,
    reason="needs root, iproute2 and bird2",
)


KEEP_LABS = "L3FABRIC_TEST_KEEP_LABS"


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02
) -> float:
    """Poll ``predicate`` until it is true; return the seconds it took.

    Raises AssertionError naming ``what`` when ``timeout`` passes first.
    """
    started = time.monotonic()
    deadline = started + timeout
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)


class Background:
    """A command running beside the test; its output (stdout and stderr) read by line."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.lines: list[str] = []
        self._partial = b""
        self._eof = False

    def _read(self, timeout: float) -> bool:
        """Read what is available within ``timeout``; False at end of output."""
        if self._eof:
            return False
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], max(timeout, 0.0))
        if not ready:
            return True
        chunk = os.read(self.proc.stdout.fileno(), 65536)
        if not chunk:
            self._eof = True
            if self._partial:
                self.lines.append(self._partial.decode(errors="replace"))
                self._partial = b""
            return False
        *complete, self._partial = (self._partial + chunk).split(b"\n")
        self.lines += [line.decode(errors="replace") for line in complete]
        return True

    def wait_for_line(self, match: Callable[[str], bool] | str, timeout: float) -> str:
        """The first output line that ``match`` accepts (a substring or a predicate)."""
        accept = (lambda line: match in line) if isinstance(match, str) else match
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for line in self.lines[seen:]:
                if accept(line):
                    return line
            seen = len(self.lines)
            left = deadline - time.monotonic()
            ended = left > 0 and not self._read(min(left, 0.2)) and seen == len(self.lines)
            if left <= 0 or ended:
                output = "\n".join(self.lines)
                why = "before it exited" if ended else f"in {timeout} s"
                raise AssertionError(f"{self.argv}: no line {match!r} {why}:\n{output}")

    def finish(self, timeout: float) -> str:
        """Wait for the command to exit by itself; return its whole output."""
        deadline = time.monotonic() + timeout
        while self._read(max(deadline - time.monotonic(), 0.0)):
            if time.monotonic() >= deadline:
                raise AssertionError(f"{self.argv} still running after {timeout} s")
        self.proc.wait(max(deadline - time.monotonic(), 0.1))
        return "\n".join(self.lines)

    def stop(self) -> str:
        """Terminate (then kill) the command; return its output so far."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(3.0)
        while self._read(0.0):
            pass
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return "\n".join(self.lines)


class Lab:
    """A running lab and helpers to drive it."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.name = plan.lab
        self.state = LabState(plan.lab)

    def ns(self, node: str) -> str:
        vms = self.state.vms()
        return vms[node]["namespace"] if node in vms else self.plan.node(node).namespace

    def exec(
        self, node: str, *cmd: str, check: bool = True, timeout: float = 20.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside the namespace of a node or VM."""
        return subprocess.run(
            ["ip", "netns", "exec", self.ns(node), *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    @contextlib.contextmanager
    def background(self, node: str, *cmd: str) -> Iterator[Background]:
        """Run ``cmd`` in a node's or VM's namespace while the block runs; stop it after."""
        job = Background(["ip", "netns", "exec", self.ns(node), *cmd])
        try:
            yield job
        finally:
            job.stop()

    def has_route(self, node: str, prefix: str) -> bool:
        """Whether a node's kernel holds a route for exactly ``prefix`` (a VM's /32, say)."""
        family = "-6" if ":" in prefix else "-4"
        out = subprocess.run(
            ["ip", "-n", self.ns(node), family, "route", "show", "exact", prefix],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return bool(out.strip())

    def fabric_nodes(self) -> list[str]:
        """Every node that routes VM addresses: hosts, ToRs and gateways."""
        return [n.name for n in self.plan.by_role("host", "tor", "gateway")]

    def first_reply(self, vm: str, address: str, within: float) -> float:
        """Ping ``address`` from ``vm`` until it answers; the wall-clock time of the reply.

        One echo at a time, each waiting 0.1 s: an ICMP error (no route yet)
        ends a ``ping -c`` run early, so the loop is here, not in ping.
        ``ping -D`` stamps the reply with the time it arrived, for comparison
        with a ``time.time()`` taken before. AssertionError after ``within`` s.
        """
        deadline = time.monotonic() + within
        last = ""
        while time.monotonic() < deadline:
            done = self.exec(vm, "ping", "-n", "-D", "-c1", "-W0.1", address, check=False)
            stamp = re.search(r"^\[(\d+\.\d+)\] \d+ bytes from", done.stdout, re.MULTILINE)
            if done.returncode == 0 and stamp:
                return float(stamp.group(1))
            last = done.stdout + done.stderr
        raise AssertionError(f"{vm}: no reply from {address} in {within} s; last try:\n{last}")

    def vm_ip(self, vm: str, version: int = 4) -> str:
        """The first fixed IP of the given version of a booted VM."""
        for port in self.state.vms()[vm]["ports"]:
            for fixed in port["fixed_ips"]:
                if (":" in fixed["ip_address"]) == (version == 6):
                    return fixed["ip_address"]
        raise KeyError(f"VM {vm} has no IPv{version} address")

    def client(self) -> FabricClient:
        return lab_client(self.plan)

    def create_network(
        self, name: str = "priv", cidrs: tuple[str, ...] = ("10.1.0.0/24", "2001:db8:1::/64")
    ) -> dict[str, Any]:
        """A network with one subnet per CIDR (dual stack by default), through the API."""
        with self.client() as client:
            net = client.create_network(name=name)
            for cidr in cidrs:
                version = 6 if ":" in cidr else 4
                client.create_subnet(network_id=net["id"], cidr=cidr, ip_version=version)
        return net

    def boot(
        self,
        vm: str,
        networks: list[str],
        host: str,
        ips: list[str] | None = None,
        anycast: list[str] | None = None,
        security_groups: list[str] | None = None,
    ) -> dict[str, Any]:
        """Boot ``vm``; ``anycast`` addresses go on its loopback (``lab boot --anycast``);
        ``security_groups``: names or ids (None: the lab's, which admit everything)."""
        return boot.boot(
            self.plan, self.state, vm, networks, host, ips or [], anycast, security_groups
        )

    def delete(self, vm: str) -> None:
        boot.delete(self.plan, self.state, vm)

    def sessions(self, node: str) -> list[ProtocolStatus]:
        return [p for p in bird.protocols(self.state.bird_ctl(node)) if p.proto == "BGP"]

    def wait_established(self, node: str, with_hosts: bool = False, timeout: float = 20.0) -> None:
        """Wait until router ``node``'s BGP sessions to other routers (and hosts) are up."""
        roles = ROUTER_ROLES + (("host",) if with_hosts else ())
        wanted = {routers.session_name(s) for s in self.plan.sessions(node) if s.peer_role in roles}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if wanted <= {p.name for p in self.sessions(node) if p.established}:
                return
            time.sleep(0.2)
        raise AssertionError(f"{node}: sessions not established: {self.sessions(node)}")


def free_api_port(count: int = 1) -> int:
    """The first of ``count`` free consecutive ports (a lab's controllers take api.port + i)."""
    return free_port(count)


class _LabMaker:
    """Makes labs with a unique name and a free API port; ``down_all`` removes them."""

    def __init__(self) -> None:
        self.made: list[str] = []

    def __call__(self, text: str, network_only: bool = False, agents: bool = True) -> Lab:
        data = yaml.safe_load(text) or {}
        data["name"] = "t" + secrets.token_hex(4)
        data.setdefault("api", {})["port"] = free_api_port(int(data.get("controllers", 1)))
        topo = parse_topology(yaml.safe_dump(data))
        self.made.append(topo.name)
        return Lab(up(topo, network_only=network_only, agents=agents))

    def down_all(self) -> None:
        if os.environ.get(KEEP_LABS):
            # For debugging a failure by hand; `l3fabric lab down NAME` afterwards.
            print(f"\n{KEEP_LABS} set: labs left up: {', '.join(self.made)}")
            return
        for name in self.made:
            down(name)


def needs_tools(*tools: str) -> pytest.MarkDecorator:
    """Skip unless every one of ``tools`` is on PATH."""
    missing = [t for t in tools if shutil.which(t) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}")


@contextlib.contextmanager
def bench_lab(prefix: str) -> Iterator[str]:
    """A fresh lab name for a benchmark that builds its own lab; the lab is removed
    again after, in case the run was interrupted half-way."""
    name = prefix + secrets.token_hex(3)
    try:
        yield name
    finally:
        down(name)


@pytest.fixture
def lab_factory() -> Iterator[Callable[..., Lab]]:
    """``lab_factory(yaml_text, network_only=False, agents=True) -> Lab``.

    The lab's name and API port are chosen here (unique, free).
    """
    maker = _LabMaker()
    try:
        yield maker
    finally:
        maker.down_all()


@pytest.fixture(scope="module")
def module_lab_factory() -> Iterator[Callable[..., Lab]]:
    """``lab_factory`` for a whole test module: its labs go when the module is done."""
    maker = _LabMaker()
    try:
        yield maker
    finally:
        maker.down_all()


class Writer(threading.Thread):
    """Creates up to ``writes`` ports through one controller until told to stop; keeps
    what was acknowledged, and counts what failed."""

    def __init__(
        self, lab: Lab, url: str, network_id: str, stop: threading.Event, writes: int
    ) -> None:
        super().__init__(daemon=True)
        self.client = FabricClient(url, timeout=5, credentials=admin_credentials(lab.name))
        self.url, self.network_id, self.stop, self.writes = url, network_id, stop, writes
        self.acknowledged: list[str] = []
        self.unreachable = 0
        self.errors: list[str] = []

    def run(self) -> None:
        with self.client:
            for i in range(self.writes):
                if self.stop.is_set():
                    return
                try:
                    made = self.client.create_port(network_id=self.network_id, name=f"w{i}")
                    self.acknowledged.append(made["id"])
                except ControllerUnavailable:
                    self.unreachable += 1
                except ApiError as exc:
                    self.errors.append(str(exc))
                self.stop.wait(0.1)


class DownReader(threading.Thread):
    """Reads every host's and gateway's status from one controller until told to
    stop; keeps each reading that showed an agent down (name, seconds since start)."""

    def __init__(self, lab: Lab, url: str, stop: threading.Event, every: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.client = FabricClient(url, timeout=5, credentials=admin_credentials(lab.name))
        self.stop, self.every = stop, every
        self.reads = 0
        self.down: list[tuple[str, float]] = []

    def run(self) -> None:
        started = time.monotonic()
        with self.client:
            while not self.stop.is_set():
                records = self.client.list_hosts() + self.client.list_gateways()
                self.reads += 1
                at = round(time.monotonic() - started, 2)
                self.down += [(r["name"], at) for r in records if r["status"] != "up"]
                self.stop.wait(self.every)


def agent_controllers(lab: Lab, client: FabricClient) -> dict[str, str]:
    """Each agent's controller, as its last heartbeat says."""
    records = client.list_hosts() + client.list_gateways()
    return {r["name"]: (r.get("agent") or {}).get("controller", "") for r in records}


def assert_no_resync(lab: Lab, node: str) -> str:
    """``node``'s agent never took a new snapshot after its first; its log."""
    log = lab.state.log_file(f"agent-{node}").read_text()
    assert "taking a new snapshot" not in log and "resyncing" not in log, log
    return log


def watch_resumed_at(lab: Lab, node: str) -> float:
    """When ``node``'s agent resumed its watch at another controller from its revision
    (not a new snapshot, which would log otherwise), by its log's clock."""
    log = assert_no_resync(lab, node)
    found = re.search(
        r"^(\S+ \S+) \S+ WARNING watch of \S+ \S+ unreachable; the watch from", log, re.M
    )
    assert found, f"{node} did not resume its watch:\n{log}"
    return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def pings(output: str) -> tuple[int, int]:
    """(sent, received) from a ping's summary line."""
    found = re.search(r"(\d+) packets transmitted, (\d+) received", output)
    assert found, output
    return int(found.group(1)), int(found.group(2))
