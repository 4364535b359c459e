"""The demo's security-group check: a group admitting TCP 80 only, seen from the internet.

A group ``web`` (one rule: TCP 80 in, from anywhere) is made with the
``openstack`` CLI and a VM booted into it alone; from the lab's internet
client, port 80 answers and port 22 does not: the VM's host filters (the
gateway filters nothing).
"""

from __future__ import annotations

import subprocess
import time

from l3fabric.lab import boot as vms
from l3fabric.lab import netns, probe
from l3fabric.lab.demo_external import Report, client_endpoint
from l3fabric.lab.plan import Node, Plan, vm_namespace
from l3fabric.lab.state import LabState
from l3fabric.osc import OpenStackCLI

VM = "vm7"
OPEN, CLOSED = 80, 22
REACHABLE_S = 5.0
REFUSED_WAIT_S = 1.0
# Accept on every port given (the VM's services).
LISTEN = """
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(8)
    while True:
        s.accept()[0].close()
for p in sys.argv[2:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
threading.Event().wait(float(sys.argv[1]))
"""
CONNECT = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))"  # fmt: skip


def _connects(ns: str, address: str, port: int, timeout: float) -> bool:
    argv = ["python3", "-c", CONNECT, address, str(port), str(timeout)]
    return probe.run_in(ns, argv, timeout=timeout + 10).returncode == 0


def check_web_group(
    plan: Plan, openstack: OpenStackCLI, host: Node, network: str, check: Report
) -> None:
    """Boot a VM in a TCP-80-only group; the internet client reaches port 80, not 22."""
    openstack("a group for web servers", "security", "group", "create", "web")
    openstack("TCP 80 in, from anywhere", "security", "group", "rule", "create", "web", "--protocol", "tcp", "--dst-port", "80")  # fmt: skip
    record = vms.boot(plan, LabState(plan.lab), VM, [network], host.name, [], None, ["web"])
    address = record["ports"][0]["fixed_ips"][0]["ip_address"]
    client = client_endpoint(plan)
    argv = ["python3", "-c", LISTEN, "60", str(OPEN), str(CLOSED)]
    server = subprocess.Popen(
        netns.exec_args(vm_namespace(plan.lab, VM), argv),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + REACHABLE_S
        while not (web := _connects(client.ns, address, OPEN, 0.3)) and time.monotonic() < deadline:
            pass
        ssh = _connects(client.ns, address, CLOSED, REFUSED_WAIT_S)
    finally:
        server.kill()
        server.wait()
    check(
        f"{VM} in group web (TCP 80)",
        f"port {OPEN} {'answers' if web else 'does not answer'}, "
        f"port {CLOSED} {'answers' if ssh else 'filtered'}",
        web and not ssh,
    )
