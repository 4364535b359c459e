"""Network namespaces, veths, addresses and sysctls of a lab, through ``ip``.

Creation is batched: one ``ip -batch`` in the root namespace creates every
namespace and every veth directly inside its two namespaces (no lab
interface ever exists in the root namespace), then one process per
namespace sets its sysctls and runs its own ``ip -batch`` for addresses,
routes and link state. These per-namespace processes run concurrently.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable

from l3fabric.dataplane.sysctl import HOST_SYSCTLS
from l3fabric.lab.errors import LabError
from l3fabric.lab.plan import MGMT_BRIDGE, Plan
from l3fabric.pids import alive

TIMEOUT = 30.0

# Routers and hosts forward with L4 hashing over equal paths (docs/measurements.md: a new
# namespace starts with ip_forward=0 and hash policy 0). A link taken down
# and up again (a host failure test) keeps its IPv6 addresses, so its IPv6
# BGP session comes back by itself, as on a router with static addresses.
FORWARDING = {**HOST_SYSCTLS, "net.ipv6.conf.all.keep_addr_on_down": "1"}
# Plain machines (clients, VMs) and the management namespace never forward.
NO_FORWARDING = {"net.ipv4.ip_forward": "0", "net.ipv6.conf.all.forwarding": "0"}


def run(cmd: list[str], stdin: str | None = None, timeout: float = TIMEOUT) -> str:
    """Run a command; a failure becomes a LabError carrying its stderr."""
    try:
        done = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise LabError(f"{cmd[0]} is not installed (run `make setup`)") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(cmd)} did not finish within {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise LabError(f"{' '.join(cmd[:6])} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def batch(lines: Iterable[str], namespace: str | None = None, force: bool = False) -> None:
    """Run ``ip`` commands in one process (``-n NS`` when a namespace is given)."""
    text = "\n".join(lines) + "\n"
    cmd = ["ip"] + (["-n", namespace] if namespace else []) + (["-force"] if force else [])
    run([*cmd, "-batch", "-"], stdin=text)


def configure_many(jobs: dict[str, tuple[dict[str, str], list[str]]]) -> None:
    """For each namespace: set sysctls, then run its ``ip`` batch; all concurrently."""
    procs = {}
    for ns, (sysctls, _) in jobs.items():
        settings = " ".join(f"{k}={v}" for k, v in sysctls.items())
        script = f"sysctl -q -w {settings} >/dev/null && exec ip -batch -"
        procs[ns] = subprocess.Popen(
            ["ip", "netns", "exec", ns, "sh", "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    failures = []
    for ns, proc in procs.items():
        try:
            _, err = proc.communicate("\n".join(jobs[ns][1]) + "\n", timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            failures.append(f"{ns}: timed out")
            continue
        if proc.returncode != 0:
            failures.append(f"{ns}: {err.strip()}")
    if failures:
        raise LabError("configuring namespaces failed: " + "; ".join(failures))


def create(plan: Plan) -> None:
    """Create the namespaces and veths of ``plan`` (one root-namespace batch)."""
    existing = set(lab_namespaces(plan.lab))
    if existing:
        raise LabError(
            f"lab {plan.lab} already has namespaces ({', '.join(sorted(existing))}); "
            f"run `l3fabric lab down {plan.lab}` first"
        )
    lines = [f"netns add {node.namespace}" for node in plan.nodes.values()]
    mgmt_ns = plan.nodes["mgmt"].namespace
    lines.append(f"link add {MGMT_BRIDGE} netns {mgmt_ns} type bridge")
    for link in plan.links:
        a, b = plan.nodes[link.a].namespace, plan.nodes[link.b].namespace
        lines.append(
            f"link add {link.a_ifname} netns {a} type veth peer name {link.b_ifname} netns {b}"
        )
    batch(lines)


def configure(plan: Plan) -> None:
    """Addresses, link state, static routes and sysctls in every namespace."""
    jobs: dict[str, tuple[dict[str, str], list[str]]] = {}
    prefixlen = plan.mgmt_network.split("/")[1]
    for node in plan.nodes.values():
        lines = ["link set lo up"]
        if node.router_id:
            lines.append(f"addr add {node.router_id}/32 dev lo")
        if node.loopback6:
            lines.append(f"addr add {node.loopback6}/128 dev lo")
        for ifname, addresses in plan.interfaces(node.name):
            for address in addresses:
                # nodad: BGP must bind to the IPv6 link address at once.
                lines.append(
                    f"addr add {address} dev {ifname}" + (" nodad" if ":" in address else "")
                )
            if node.role == "mgmt":
                lines.append(f"link set {ifname} master {MGMT_BRIDGE}")
            lines.append(f"link set {ifname} up")
        if node.role == "mgmt":
            lines.append(f"addr add {plan.controller_mgmt}/{prefixlen} dev {MGMT_BRIDGE}")
            lines.append(f"link set {MGMT_BRIDGE} up")
        lines += [f"route add {route}" for route in plan.routes.get(node.name, [])]
        sysctls = dict(
            FORWARDING if node.role in ("host", "tor", "gateway", "internet") else NO_FORWARDING
        )
        # No duplicate address detection on lab links: nothing else is on them,
        # and on a busy machine link-local addresses stayed "tentative" long
        # enough that IPv6 neighbour discovery, and so BGP over IPv6, failed.
        sysctls["net.ipv6.conf.all.accept_dad"] = "0"
        sysctls["net.ipv6.conf.default.accept_dad"] = "0"
        for ifname, _ in plan.interfaces(node.name):
            sysctls[f"net.ipv6.conf.{ifname}.accept_dad"] = "0"
        jobs[node.namespace] = (sysctls, lines)
    configure_many(jobs)


def lab_namespaces(lab: str) -> list[str]:
    """Every namespace that belongs to ``lab`` (by its name prefix)."""
    out = run(["ip", "netns", "list"])
    prefix = f"l3f-{lab}-"
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


def namespace_pids(ns: str) -> list[int]:
    try:
        out = run(["ip", "netns", "pids", ns], timeout=10)
    except LabError:
        return []  # already gone
    return [int(p) for p in out.split() if p.isdigit()]


def kill_pids(pids: Iterable[int], grace: float = 3.0) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL what is left."""
    pids = [p for p in set(pids) if p != os.getpid()]
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if alive(pid):
            _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


# How many times ``stop_processes`` lists and kills the namespaces' processes.
KILL_ROUNDS = 3


def stop_processes(namespaces: Iterable[str]) -> None:
    """Kill every process inside the namespaces (those gone already hold none).

    A process that is being stopped may start another one first (an agent
    that was restarting dnsmasq, which daemonizes): they are listed again
    until none is left, or a daemon outlives its namespace.
    """
    namespaces = list(namespaces)
    for _ in range(KILL_ROUNDS):
        pids = [pid for ns in namespaces for pid in namespace_pids(ns)]
        if not pids:
            return
        kill_pids(pids)


def delete(namespaces: Iterable[str]) -> None:
    """Kill every process inside the namespaces, then delete them (veths go too)."""
    namespaces = list(namespaces)
    stop_processes(namespaces)
    if namespaces:
        batch([f"netns del {ns}" for ns in namespaces], force=True)


def exec_args(ns: str, command: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *command]
