"""``l3fabric demo``: a controller on a throw-away SQLite file, driven by the real ``openstack`` CLI.

Starts ``l3fabric server`` on a free loopback port, creates a public
(``router:external``) and a private network with a subnet each and a few
ports, lists and shows them, then plays a host agent for a moment (register,
heartbeat) so the bound port turns ACTIVE. Every command is printed with its
output; the exit code is non-zero as soon as a step fails.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from rich.console import Console

from l3fabric.client import ApiError, ControllerUnavailable, FabricClient
from l3fabric.loopback import free_port
from l3fabric.osc import CommandFailed, OpenStackCLI, openstack_executable

HOST = "compute-1"
# The openstack CLI steps: (what it shows, arguments after `openstack`).
STEPS: list[tuple[str, list[str]]] = [
    ("a public network: its addresses are routed, no NAT",
     ["network", "create", "--external", "demo-public"]),
    ("a private network: SNAT once, at the edge gateway",
     ["network", "create", "demo-private"]),
    ("the public subnet",
     ["subnet", "create", "--network", "demo-public", "--subnet-range", "203.0.113.0/24",
      "demo-public-v4"]),
    ("the private subnet",
     ["subnet", "create", "--network", "demo-private", "--subnet-range", "10.1.0.0/24",
      "demo-private-v4"]),
    ("a public port with a chosen address",
     ["port", "create", "--network", "demo-public",
      "--fixed-ip", "subnet=demo-public-v4,ip-address=203.0.113.10", "web"]),
    (f"a private port bound to host {HOST} (IPAM picks the address)",
     ["port", "create", "--network", "demo-private", "--host", HOST, "app"]),
    ("all networks", ["network", "list"]),
    ("all subnets", ["subnet", "list"]),
    ("all ports", ["port", "list"]),
    ("one port in full", ["port", "show", "web"]),
]  # fmt: skip
SERVER_START_TIMEOUT_S = 20


class DemoFailed(Exception):
    """A step failed; the message says which and why."""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo", help="start a controller and drive it with the openstack CLI (no root needed)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    # The demo prints what it does itself; httpx's per-request log lines are noise here.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        openstack_executable()
    except CommandFailed as exc:
        console.print(f"[red]l3fabric demo: {exc}[/red]")
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="l3fabric-demo-") as tmp, _server(tmp) as url:
            console.rule(f"[bold]l3fabric controller at {url} (store: {tmp}/demo.db)")
            openstack = OpenStackCLI(url, console)
            for title, argv in STEPS:
                openstack(title, *argv)
            _agent_part(console, openstack, url)
    except (DemoFailed, CommandFailed) as exc:
        console.print(f"[bold red]demo failed: {exc}[/bold red]")
        return 1
    console.rule("[bold green]demo finished: every step succeeded")
    return 0


@contextmanager
def _server(tmp: str) -> Iterator[str]:
    """``l3fabric server`` in a child process; yields its URL once it answers."""
    url = f"http://127.0.0.1:{free_port()}"
    log_path = Path(tmp) / "server.log"
    command = [
        sys.executable, "-m", "l3fabric.cli", "server",
        "--store", f"sqlite:///{tmp}/demo.db", "--listen", url.removeprefix("http://"),
    ]  # fmt: skip
    with log_path.open("w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(url, proc, log_path)
        yield url
    finally:
        proc.terminate()
        try:
            code = proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            raise DemoFailed("the server did not stop within 10 s of SIGTERM") from None
        if code != 0:
            raise DemoFailed(f"the server exited with {code}:\n{log_path.read_text()[-2000:]}")


def _wait_ready(url: str, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoFailed(f"the server exited at start:\n{log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise DemoFailed(f"the server did not answer within {SERVER_START_TIMEOUT_S} s")


def _agent_part(console: Console, openstack: OpenStackCLI, url: str) -> None:
    """What a host agent does through the fabric API, then the port's status as Neutron shows it."""
    console.print(
        f"\n[bold cyan]# the host agent of {HOST}: register, snapshot, heartbeat[/bold cyan]"
    )
    try:
        with FabricClient(url) as client:
            client.register_host(HOST, router_id="10.0.0.11", address="10.0.0.11")
            snap = client.snapshot(HOST)
            ports = {p["id"]: p for p in snap["ports"]}
            for p in ports.values():
                ips = ", ".join(ip["ip_address"] for ip in p["fixed_ips"])
                console.print(f"port {p['id']} ({p['name'] or 'unnamed'}) bound here: {ips}")
            if not ports:
                raise DemoFailed(f"the snapshot of {HOST} holds no port")
            client.heartbeat(HOST, ports=dict.fromkeys(ports, "ACTIVE"), agent={"demo": True})
            host = client.get_host(HOST)
            console.print(f"host {HOST}: status {host['status']}, AS {host['effective_asn']}")
    except (ApiError, ControllerUnavailable) as exc:
        raise DemoFailed(f"fabric API: {exc}") from None
    status = openstack(
        "Neutron now shows the port ACTIVE", "port", "show", "app", "-c", "status", "-f", "value"
    )
    if status.strip() != "ACTIVE":
        raise DemoFailed(f"port app is {status.strip()!r}, expected ACTIVE after the heartbeat")
