"""Reusable lab fixtures for integration tests (root, real namespaces, real BIRD).

Import explicitly in a test module::

    from .lab_fixtures import lab_factory  # noqa: F401  (the fixture)

    def test_x(lab_factory):
        lab = lab_factory("racks: [{name: r1, hosts: 2}]")
        lab.exec("r1-h1", "ping", "-c1", "203.0.113.5")

Every lab gets a unique name and a free API port, and is torn down by the
fixture's finalizer, also when the test fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from l3fabric.client import FabricClient
from l3fabric.lab import bird, boot, routers
from l3fabric.lab.down import down
from l3fabric.lab.plan import ROUTER_ROLES, Plan
from l3fabric.lab.state import LabState
from l3fabric.lab.topology import parse_topology
from l3fabric.lab.up import up
from l3fabric.routing.bird_control import ProtocolStatus

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("bird") is None or shutil.which("ip") is None,
    reason="needs root, iproute2 and bird2",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    def client(self) -> FabricClient:
        return FabricClient(self.plan.api_url())

    def boot(
        self, vm: str, networks: list[str], host: str, ips: list[str] | None = None
    ) -> dict[str, Any]:
        return boot.boot(self.plan, self.state, vm, networks, host, ips or [])

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


@pytest.fixture
def lab_factory() -> Iterator[Callable[..., Lab]]:
    """``lab_factory(yaml_text, network_only=False, agents=True) -> Lab``.

    The lab's name and API port are chosen here (unique, free).
    """
    made: list[str] = []

    def make(text: str, network_only: bool = False, agents: bool = True) -> Lab:
        data = yaml.safe_load(text) or {}
        data["name"] = "t" + secrets.token_hex(4)
        data.setdefault("api", {})["port"] = free_port()
        topo = parse_topology(yaml.safe_dump(data))
        made.append(topo.name)
        return Lab(up(topo, network_only=network_only, agents=agents))

    try:
        yield make
    finally:
        for name in made:
            down(name)
