"""``l3fabric bench sg``: the cost of security groups on a loaded host, end to end in a lab.

The benchmark builds its own lab (``bsg<random>``: hosts r1-h1 and r1-h2
under a gateway, no ToR) and always tears it down. Through the API:

- groups ``rg1`` and ``rg2`` with ``members`` member ports each (bound to a
  host with no agent: only their addresses matter), and groups ``ga`` and
  ``gb`` of ten rules each (Neutron's two egress rules, a
  ``remote_group_id`` rule over ``rg1`` / ``rg2``, six TCP ports, UDP or
  ICMP): 20 rules a port, two of them remote-group rules;
- ``ports`` ports bound to r1-h1 in ``ga`` and ``gb``, each with a veth tap
  in r1-h1's namespace (the agent programs them all: chains, maps, routes);
- VMs ``vm1`` and ``vm2`` on r1-h1 and ``far`` on r1-h2, in ``ga`` and ``gb``.

Measured, with the groups (``sg_``) and then with port security off on the
three VMs (``open_``), in the same run: one iperf3 TCP stream vm2 -> vm1 (both
on the loaded host: the sender's egress and the receiver's ingress chains)
and far -> vm1 (``remote_``); new TCP connections per second vm2 -> vm1 and
far -> vm1 (one client, connect, wait for the server's close, RST). With the
groups: ``rule_add_enforced_p99_s`` (a rule for a new TCP port added through
the API until a probe connection from far to it succeeds, ``tries`` times)
and ``member_add_enforced_p99_s`` (far's port added to ``rg1`` until it
reaches a port only the remote-group rule admits); ``one_rule_statements``
(the agent's transaction for a one-rule change, from its ``passes.json``).

Options (``--set KEY=VALUE``): ``ports`` (1000), ``members`` (1000),
``duration`` (3 s), ``tries`` (20), ``rounds`` (2: groups, port security off,
groups, off; the means are reported), ``lab`` (the lab's name).
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from l3fabric.bench.dataplane import BenchError, _start, _stop
from l3fabric.bench.parts import OptionReader, require_root
from l3fabric.client import FabricClient
from l3fabric.dataplane.links import tap_name
from l3fabric.lab import boot, netns, probe
from l3fabric.lab.credentials import LAB_PROJECT, lab_client
from l3fabric.lab.down import down
from l3fabric.lab.plan import Plan
from l3fabric.lab.state import LabState
from l3fabric.lab.topology import LAB_NAME, Api, Internet, Rack, Topology
from l3fabric.lab.up import up
from l3fabric.loopback import free_port

log = logging.getLogger(__name__)

CIDR = "10.64.0.0/18"  # room for the ports, both member groups and the VMs
BULK = 250  # ports per bulk create
ELSEWHERE = "sg-bench-elsewhere"  # members' host: no agent, only their addresses matter
CONN_PORT, IPERF_PORT, MEMBER_PORT, RULE_PORT = 80, 81, 7001, 6000
VMS = {"vm1": "r1-h1", "vm2": "r1-h1", "far": "r1-h2"}
READY_S = 60.0
TRY_S = 5.0  # one enforcement try gives up after this

# Accept on every port given and close at once (the client waits for that close).
SERVER = """
import selectors, socket, sys
sel = selectors.DefaultSelector()
for p in sys.argv[1:]:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(p))); s.listen(1024); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        try:
            key.fileobj.accept()[0].close()
        except OSError:
            pass
"""
# New connections for argv[3] seconds: connect, wait for the close, reset (no TIME_WAIT).
CONNS = """
import socket, struct, sys, time
addr, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
linger = struct.pack("ii", 1, 0)
n, start = 0, time.monotonic()
while time.monotonic() - start < seconds:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    s.settimeout(1.0)
    try:
        s.connect((addr, port)); s.recv(1); n += 1
    except OSError:
        pass
    s.close()
print(n / (time.monotonic() - start))
"""
# Try to connect (short attempts) until it works; print the wall clock of success.
PROBE = """
import socket, sys, time
addr, port, until = sys.argv[1], int(sys.argv[2]), time.time() + float(sys.argv[3])
print("ready", flush=True)
while time.time() < until:
    s = socket.socket(); s.settimeout(0.05)
    try:
        s.connect((addr, port)); print(time.time(), flush=True); break
    except OSError:
        time.sleep(0.005)
    finally:
        s.close()
else:
    print("never", flush=True)
"""


def p99(values: list[float]) -> float:
    """Nearest-rank 99th percentile (of 20 tries: the slowest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def _rule(group: str, **attrs: Any) -> dict[str, Any]:
    return {"security_group_id": group, "direction": "ingress", "ethertype": "IPv4", **attrs}


def _tcp(group: str, port: int) -> dict[str, Any]:
    return _rule(group, protocol="tcp", port_range_min=port, port_range_max=port)


class SgBench:
    """One run in lab ``plan``."""

    def __init__(self, plan: Plan, api: FabricClient, opts: dict[str, int]) -> None:
        self.plan = plan
        self.api = api
        self.opts = opts
        self.state = LabState(plan.lab)
        self.groups: dict[str, str] = {}
        self.vms: dict[str, dict[str, Any]] = {}

    def ns(self, vm: str) -> str:
        return str(self.vms[vm]["namespace"])

    def ip(self, vm: str) -> str:
        return str(self.vms[vm]["ports"][0]["fixed_ips"][0]["ip_address"])

    def port_id(self, vm: str) -> str:
        return str(self.vms[vm]["ports"][0]["id"])

    # Building -------------------------------------------------------------------

    def build(self) -> None:
        net = self.api.create_network(name="sgbench")
        self.api.create_subnet(network_id=net["id"], cidr=CIDR, ip_version=4)
        for name in ("rg1", "rg2", "ga", "gb"):
            self.groups[name] = self.api.create("security-groups", {"name": name})["id"]
        ga, gb = self.groups["ga"], self.groups["gb"]
        rules = [_rule(ga, remote_group_id=self.groups["rg1"])]
        rules += [_tcp(ga, p) for p in range(80, 86)]
        rules += [_rule(ga, protocol="udp", port_range_min=5000, port_range_max=5100)]
        rules += [_rule(gb, remote_group_id=self.groups["rg2"])]
        rules += [_tcp(gb, p) for p in range(8000, 8006)]
        rules += [_rule(gb, protocol="icmp", port_range_min=8)]
        for rule in rules:
            self.api.create("security-group-rules", rule)
        members = self.opts["members"]
        for group in ("rg1", "rg2"):
            self._ports(net["id"], members, ELSEWHERE, [self.groups[group]])
        ids = self._ports(net["id"], self.opts["ports"], "r1-h1", [ga, gb])
        host_ns = self.plan.node("r1-h1").namespace
        lines = [
            f"link add {tap_name(pid)} type veth peer name sgp{i}" for i, pid in enumerate(ids)
        ]
        netns.batch(lines, namespace=host_ns)
        for vm, host in VMS.items():
            self.vms[vm] = boot.boot(self.plan, self.state, vm, ["sgbench"], host, [], None, ["ga", "gb"])  # fmt: skip

    def _ports(self, network: str, count: int, host: str, groups: list[str]) -> list[str]:
        ids: list[str] = []
        while len(ids) < count:
            body = {
                "ports": [
                    {
                        "network_id": network,
                        "binding:host_id": host,
                        "device_owner": "compute:bench",
                        "security_groups": groups,
                    }
                    for _ in range(min(BULK, count - len(ids)))
                ]
            }
            ids += [p["id"] for p in self.api.request("POST", "/v2.0/ports", json=body)["ports"]]
        return ids

    # Probes ---------------------------------------------------------------------

    def connects(self, vm: str, target: str, port: int, timeout: float = 0.2) -> bool:
        code = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))"  # fmt: skip
        argv = ["python3", "-c", code, self.ip(target), str(port), str(timeout)]
        return probe.run_in(self.ns(vm), argv, timeout=timeout + 10).returncode == 0

    def wait(self, what: str, predicate: Any, timeout: float = READY_S) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise BenchError(f"{what}: not within {timeout:.0f} s")
            time.sleep(0.05)

    def enforced_after(self, change: Any, port: int) -> float:
        """Seconds from ``change()`` (an API call) until far connects to vm1's ``port``."""
        prober = _start(
            self.ns("far"),
            ["python3", "-u", "-c", PROBE, self.ip("vm1"), str(port), str(TRY_S)],
            ready="ready",
        )
        try:
            started = time.time()
            change()
            out, _ = prober.communicate(timeout=TRY_S + 10)
        finally:
            _stop(prober)
        last = out.decode().split()[-1]
        if last == "never":
            raise BenchError(f"port {port} of vm1 not reachable {TRY_S} s after the change")
        return float(last) - started

    def iperf(self, client: str) -> float:
        argv = ["iperf3", "-c", self.ip("vm1"), "-p", str(IPERF_PORT), "-t", str(self.opts["duration"]), "-J"]  # fmt: skip
        done = probe.run_in(self.ns(client), argv, timeout=self.opts["duration"] + 20)
        if done.returncode != 0:
            raise BenchError(f"iperf3 {client} -> vm1 failed: {done.stdout[-300:]} {done.stderr}")
        return float(json.loads(done.stdout)["end"]["sum_received"]["bits_per_second"]) / 1e9

    def conn_rate(self, client: str) -> float:
        argv = ["python3", "-c", CONNS, self.ip("vm1"), str(CONN_PORT), str(self.opts["duration"])]
        done = probe.run_in(self.ns(client), argv, timeout=self.opts["duration"] + 20)
        if done.returncode != 0:
            raise BenchError(f"connections {client} -> vm1 failed: {done.stderr[-300:]}")
        return float(done.stdout.strip())

    def traffic(self) -> dict[str, float]:
        """One iperf3 stream and one connection-rate run from vm2 and from far to vm1."""
        return {
            "gbit_s": self.iperf("vm2"),
            "remote_gbit_s": self.iperf("far"),
            "conn_per_s": self.conn_rate("vm2"),
            "remote_conn_per_s": self.conn_rate("far"),
        }

    # Enforcement times ----------------------------------------------------------

    def rule_adds(self) -> tuple[list[float], int | None]:
        seconds: list[float] = []
        statements = None
        for i in range(self.opts["tries"]):
            port = RULE_PORT + i
            made: list[dict[str, Any]] = []

            def add(port: int = port, made: list[dict[str, Any]] = made) -> None:
                made.append(self.api.create("security-group-rules", _tcp(self.groups["ga"], port)))

            seconds.append(self.enforced_after(add, port))
            if statements is None:
                statements = self.last_sg_statements()
            self.settled(lambda made=made: self.api.delete("security-group-rules", made[0]["id"]))
        return seconds, statements

    def sg_passes(self) -> list[dict[str, Any]]:
        """r1-h1's recent passes with a security-group step (its passes.json)."""
        path = self.state.agent_dir("r1-h1") / "passes.json"
        try:
            passes = json.loads(path.read_text())["passes"]
        except (OSError, ValueError, KeyError):
            return []
        return [p for p in passes if "secgroups" in p["steps"]]

    def last_sg_statements(self) -> int | None:
        """The statements of r1-h1's last security-group transaction."""
        found = self.sg_passes()
        return int(found[-1]["steps"]["secgroups"]["changes"]) if found else None

    def settled(self, undo: Any) -> None:
        """Run ``undo`` (an API call that may admit less) and wait until the agent's pass
        for it is over, conntrack pruning included: the next try starts from quiet."""
        before = max((p["number"] for p in self.sg_passes()), default=0)
        undo()
        self.wait(
            "the agent applies the undo",
            lambda: max((p["number"] for p in self.sg_passes()), default=0) > before,
            timeout=30,
        )

    def member_adds(self) -> list[float]:
        seconds: list[float] = []
        far, ga, gb = self.port_id("far"), self.groups["ga"], self.groups["gb"]
        for _ in range(self.opts["tries"]):

            def join() -> None:
                groups = [ga, gb, self.groups["rg1"]]
                self.api.update("ports", far, {"security_groups": groups})

            seconds.append(self.enforced_after(join, MEMBER_PORT))
            self.settled(lambda: self.api.update("ports", far, {"security_groups": [ga, gb]}))
        return seconds

    def port_security(self, on: bool) -> None:
        groups = [self.groups["ga"], self.groups["gb"]] if on else []
        for vm in VMS:
            attrs = {"port_security_enabled": on, "security_groups": groups}
            self.api.update("ports", self.port_id(vm), attrs)
        # Only the remote-group rule admits MEMBER_PORT, and far is no member.
        self.wait(
            "port security switched",
            lambda: self.connects("far", "vm1", MEMBER_PORT) != on,
        )

    def measure(self) -> dict[str, Any]:
        self.build()
        ports = [str(p) for p in (CONN_PORT, MEMBER_PORT, *range(RULE_PORT, RULE_PORT + self.opts["tries"]))]  # fmt: skip
        server = ["python3", "-u", "-c", SERVER, *ports]
        iperf = ["iperf3", "-s", "-p", str(IPERF_PORT), "--forceflush"]
        with (
            _running(self.ns("vm1"), server, "ready"),
            _running(self.ns("vm1"), iperf, "listening"),
        ):
            self.wait("far reaches vm1", lambda: self.connects("far", "vm1", CONN_PORT))
            self.wait("vm2 reaches vm1", lambda: self.connects("vm2", "vm1", CONN_PORT))
            table = probe.run_in(
                self.plan.node("r1-h1").namespace,
                ["nft", "list", "table", "inet", "l3fabric-sg"],
                timeout=30,
            ).stdout
            result: dict[str, Any] = {"chains_on_host": table.count("\tchain ")}
            runs: dict[str, list[dict[str, float]]] = {"sg": [], "open": []}
            for r in range(self.opts["rounds"]):
                # Groups, then port security off, in turn: drift in the load hits both.
                runs["sg"].append(self.traffic())
                if r == 0:
                    rules, statements = self.rule_adds()
                    members = self.member_adds()
                self.port_security(False)
                runs["open"].append(self.traffic())
                if r + 1 < self.opts["rounds"]:
                    self.port_security(True)
        for mode, measured in runs.items():
            for key in measured[0]:
                # "gbit_s" -> "sg_gbit_s", "remote_gbit_s" -> "remote_sg_gbit_s"
                local = key.removeprefix("remote_")
                name = f"{mode}_{local}" if local == key else f"remote_{mode}_{local}"
                result[name] = round(statistics.mean(m[key] for m in measured), 3)
        result.update(
            {
                "rule_add_enforced_p99_s": round(p99(rules), 3),
                "rule_add_enforced_p50_s": round(sorted(rules)[len(rules) // 2], 3),
                "member_add_enforced_p99_s": round(p99(members), 3),
                "member_add_enforced_p50_s": round(sorted(members)[len(members) // 2], 3),
                "one_rule_statements": statements,
            }
        )
        for what in ("gbit", "conn"):
            key = "gbit_s" if what == "gbit" else "conn_per_s"
            result[f"sg_over_open_{what}"] = round(result[f"sg_{key}"] / result[f"open_{key}"], 3)
            result[f"remote_sg_over_open_{what}"] = round(
                result[f"remote_sg_{key}"] / result[f"remote_open_{key}"], 3
            )
        return result


@contextmanager
def _running(ns: str, argv: list[str], ready: str) -> Iterator[None]:
    proc = _start(ns, argv, ready)
    try:
        yield
    finally:
        _stop(proc)


def run(options: dict[str, str]) -> dict[str, Any]:
    known = {"ports", "members", "duration", "tries", "rounds", "lab"}
    reader = OptionReader("sg", options, known)
    opts = {
        "ports": reader.integer("ports", 1000, 1, 4000),
        "members": reader.integer("members", 1000, 1, 4000),
        "duration": reader.integer("duration", 3, 1, 60),
        "tries": reader.integer("tries", 20, 1, 100),
        "rounds": reader.integer("rounds", 2, 1, 10),
    }
    require_root("sg")
    lab = options.get("lab") or "bsg" + secrets.token_hex(3)
    if not LAB_NAME.match(lab):
        raise SystemExit(f"bench sg: lab must be 1-10 characters a-z0-9, got {lab!r}")
    if LabState(lab).exists() or netns.lab_namespaces(lab):
        raise SystemExit(f"bench sg: lab {lab} exists already; choose another name")
    topo = Topology(
        name=lab,
        racks=[Rack(name="r1", hosts=2, tor=False)],
        internet=Internet(clients=0),
        api=Api(port=free_port()),
    )
    load = os.getloadavg()[0]
    try:
        plan = up(topo, step=lambda text: log.info("lab %s: %s", lab, text))
        with lab_client(plan) as api:
            # 1,000 ports and their groups: above Neutron's default quotas.
            api.set_quota(LAB_PROJECT, port=-1, security_group=-1, security_group_rule=-1)
            result = SgBench(plan, api, opts).measure()
        return {"lab": lab, **opts, "load_1min_before": round(load, 2), **result}
    finally:
        down(lab)
