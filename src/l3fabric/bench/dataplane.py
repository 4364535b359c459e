"""``l3fabric bench dataplane``: the pure-L3 path against a floating-IP network node.

Everything runs in a lab the benchmark builds itself (``bdp<random>``, its own
API port: one rack of ``hosts`` compute hosts behind a ToR, one gateway, the
internet router, one client) and always tears down, also after a failure.

1. A public network (``router:external``) is created through the API and a VM
   ``perf`` is booted on it (``lab boot``).
2. The traditional path is built next to the fabric: a network-node namespace
   ``l3f-<lab>-netnode`` joined by one veth to the internet router
   (``l3f-dn0``) and one to the gateway (``l3f-dn1``), with static routes
   only. A "floating IP" from the end of the upstream range is routed by the
   internet router to the network node, which DNATs it to the VM's address
   and SNATs it to its own inner address, so the replies come back through it
   (in this fabric the VM's default route leads to the gateway, not to a
   Neutron router). The path gains one routed hop and two NAT translations,
   as a floating IP through a network node does.
3. From the internet client, to the VM's own address (L3) and to the
   floating IP (DNAT), alternating, ``rounds`` times each: TCP throughput
   (one iperf3 stream for ``duration`` seconds) and round-trip time (``pings``
   echo requests 10 ms apart; the median). The reply TTLs show the hop counts.
4. Boot to reachable: ``vms`` VMs booted one after another, spread over the
   hosts, each with a one-connection TCP listener (socat); the time from the
   boot call (the port create in the API, then the VM namespace and its tap)
   until a TCP connect from the internet client to the VM's address succeeds.
   A VM not reachable within ``timeout`` seconds counts as ``timeout`` and is
   reported in ``unreachable``.
5. The same with ``lab boot --dhcp`` (dhclient in the VM; the boot call
   returns once the VM has its lease): ``dhcp_boot_to_reachable_p99_s``
   and the other ``dhcp_`` figures, next to the static ones.

Options (``--set KEY=VALUE``): ``vms`` (50), ``hosts`` (2), ``duration`` (3 s),
``pings`` (50), ``rounds`` (2), ``timeout`` (10 s), ``lab`` (the lab's name;
default ``bdp`` + random hex).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import secrets
import select
import socket
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l3fabric.dataplane.netns import entered
from l3fabric.lab import bird, boot, netns, probe
from l3fabric.lab.credentials import lab_client
from l3fabric.lab.down import down
from l3fabric.lab.errors import LabError
from l3fabric.lab.plan import Plan, namespace, vm_namespace
from l3fabric.lab.state import LabState
from l3fabric.lab.topology import LAB_NAME, Api, Internet, Rack, Topology
from l3fabric.lab.up import up
from l3fabric.loopback import free_port

log = logging.getLogger(__name__)

DEFAULTS: dict[str, int] = {
    "vms": 50,
    "hosts": 2,
    "duration": 3,
    "pings": 50,
    "rounds": 2,
    "timeout": 10,
}
LIMITS: dict[str, int] = {
    "vms": 200,
    "hosts": 16,
    "duration": 60,
    "pings": 1000,
    "rounds": 10,
    "timeout": 60,
}

IPERF_PORT = 5201
LISTEN_PORT = 7000
NETNODE = "netnode"
NETNODE_OUTER_LINK = "l3f-dn0"  # internet router <-> network node
NETNODE_INNER_LINK = "l3f-dn1"  # network node <-> gateway
NAT_TABLE = "l3f_fip"
START_TIMEOUT_S = 5.0
REACHABLE_TIMEOUT_S = 10.0
SESSION_WAIT_S = 30.0
CONNECT_TRY_S = 0.2  # one connect attempt; a lost SYN is retried this soon
RETRY_S = 0.005

_TIME = re.compile(r"time=([0-9.]+) ms")
_TTL = re.compile(r"ttl=(\d+)")


# A --dhcp boot slower than this is logged with where its time went.
DHCP_SLOW_S = 2.0


class BenchError(RuntimeError):
    """The benchmark could not measure what it should (the message says what)."""


@dataclass(frozen=True)
class Options:
    vms: int
    hosts: int
    duration: int
    pings: int
    rounds: int
    timeout: int
    lab: str


def parse_options(options: dict[str, str]) -> Options:
    """Validate ``--set`` options; a bad one exits with a message naming it."""
    known = {*DEFAULTS, "lab"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise SystemExit(f"bench dataplane: unknown option(s) {unknown}; known: {sorted(known)}")
    values: dict[str, Any] = dict(DEFAULTS)
    for key, text in options.items():
        if key == "lab":
            continue
        if not text.isdigit() or not 1 <= int(text) <= LIMITS[key]:
            raise SystemExit(
                f"bench dataplane: {key} must be an integer from 1 to {LIMITS[key]}, got {text!r}"
            )
        values[key] = int(text)
    lab = options.get("lab") or "bdp" + secrets.token_hex(3)
    if not LAB_NAME.match(lab):
        raise SystemExit(
            f"bench dataplane: lab must be 1-10 characters a-z0-9 starting with a letter, got {lab!r}"
        )
    return Options(lab=lab, **values)


def topology(opts: Options) -> Topology:
    """The benchmark's lab: one rack behind a ToR, one gateway, one internet client."""
    return Topology(
        name=opts.lab,
        racks=[Rack(name="r1", hosts=opts.hosts, tor=True)],
        internet=Internet(clients=1),
        api=Api(port=free_port()),
    )


def run(options: dict[str, str]) -> dict[str, Any]:
    opts = parse_options(options)
    # The teardown below removes everything named after the lab: never someone else's.
    if LabState(opts.lab).exists() or netns.lab_namespaces(opts.lab):
        raise SystemExit(f"bench dataplane: lab {opts.lab} exists already; choose another name")
    topo = topology(opts)
    started = time.monotonic()
    log.info("lab %s: building (%d hosts behind a ToR, gateway, internet)", opts.lab, opts.hosts)
    try:
        plan = up(topo, step=lambda text: log.info("lab %s: %s", opts.lab, text))
        lab_up_s = time.monotonic() - started
        result = Bench(plan, opts, topo.addressing.upstream).measure()
        return {"lab": opts.lab, "lab_up_s": round(lab_up_s, 2), **result}
    finally:
        log.info("lab %s: tearing down", opts.lab)
        down(opts.lab)


def percentile(values: list[float], pct: int) -> float:
    """The ``pct``-th percentile, interpolated between the closest ranks."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


class Bench:
    """The measurements of one run, in lab ``plan``."""

    def __init__(self, plan: Plan, opts: Options, upstream: str) -> None:
        self.plan = plan
        self.opts = opts
        self.state = LabState(plan.lab)
        self.upstream = ipaddress.ip_network(upstream)
        self.client_ns = plan.by_role("client")[0].namespace
        self.hosts = [h.name for h in plan.by_role("host")]
        self.public = next(p for p in plan.public if ipaddress.ip_network(p).version == 4)

    def wait_for_host_sessions(self, timeout: float = SESSION_WAIT_S) -> None:
        """Wait until every host's IPv4 BGP sessions (its agent's BIRD) are established.

        ``lab up`` waits only for the routers; measuring boot times against a
        host whose sessions are still coming up would measure BGP's start.
        Only IPv4 is measured, so only the sessions carrying IPv4 count.
        """
        expected = {
            h: sum(1 for s in self.plan.sessions(h) if ":" not in s.remote) for h in self.hosts
        }
        deadline = time.monotonic() + timeout
        pending = list(self.hosts)
        while pending and time.monotonic() < deadline:
            pending = [
                h for h in pending if _ipv4_sessions_up(self.state.agent_bird_ctl(h)) < expected[h]
            ]
            if pending:
                time.sleep(0.1)
        if pending:
            raise BenchError(
                f"IPv4 BGP sessions of {', '.join(pending)} not established after {timeout:.0f} s"
            )

    def measure(self) -> dict[str, Any]:
        self.wait_for_host_sessions()
        with lab_client(self.plan) as api:
            net = api.create_network(name="public", **{"router:external": True})
            api.create_subnet(
                network_id=net["id"], cidr=self.public, ip_version=4, name="public-v4"
            )
        vm = boot.boot(self.plan, self.state, "perf", ["public"], self.hosts[0], [])
        address = vm["ports"][0]["fixed_ips"][0]["ip_address"]
        if probe.wait_reachable(self.client_ns, address, REACHABLE_TIMEOUT_S) is None:
            raise BenchError(
                f"VM perf ({address}) not reachable from the internet client; "
                f"no route to it in: {', '.join(self.without_route(address, self.hosts[0])) or 'none'}"
            )
        floating = self.build_network_node(address)
        if probe.wait_reachable(self.client_ns, floating, REACHABLE_TIMEOUT_S) is None:
            raise BenchError(f"floating IP {floating} (DNAT to {address}) not reachable")
        log.info("paths: L3 to %s, DNAT via %s", address, floating)
        paths = self.compare_paths(vm["namespace"], address, floating)
        log.info("boot to reachable: %d VMs", self.opts.vms)
        static = self.boot_to_reachable()
        log.info("boot to reachable with --dhcp: %d VMs", self.opts.vms)
        dhcp = self.boot_to_reachable(dhcp="dhclient")
        return {**paths, **static, **dhcp}

    def without_route(self, address: str, host: str) -> list[str]:
        """The nodes on the path to ``address``/32 on ``host`` that have no route for it."""
        nodes = [self.plan.node(host), *self.plan.by_role("tor", "gateway")]
        return [n.name for n in nodes if not probe.has_route(n.namespace, f"{address}/32")]

    # The network node -------------------------------------------------------------

    def build_network_node(self, vm_address: str) -> str:
        """Build the floating-IP network node for ``vm_address``; returns the floating IP.

        Addresses come from the end of the upstream range, which the lab fills
        from its start: two /31 links and the floating IP.
        """
        top = int(self.upstream.broadcast_address)
        addr = ipaddress.ip_address
        outer_router, outer_node = addr(top - 7), addr(top - 6)  # internet router, network node
        inner_node, inner_gateway = addr(top - 5), addr(top - 4)  # network node, gateway
        floating = addr(top - 1)
        used = {
            ipaddress.ip_interface(a).ip
            for link in self.plan.links
            for a in (link.a4, link.b4)
            if a
        }
        clash = used & {outer_router, outer_node, inner_node, inner_gateway, floating}
        if clash:
            raise BenchError(f"upstream range {self.upstream} too small: {sorted(map(str, clash))}")
        gateway = self.plan.by_role("gateway")[0].namespace
        internet = self.plan.by_role("internet")[0].namespace
        node = namespace(self.plan.lab, NETNODE)
        netns.batch(
            [
                f"netns add {node}",
                f"link add {NETNODE_OUTER_LINK} netns {internet} type veth "
                f"peer name {NETNODE_OUTER_LINK} netns {node}",
                f"link add {NETNODE_INNER_LINK} netns {node} type veth "
                f"peer name {NETNODE_INNER_LINK} netns {gateway}",
            ]
        )
        netns.batch(
            [
                f"addr add {outer_router}/31 dev {NETNODE_OUTER_LINK}",
                f"link set {NETNODE_OUTER_LINK} up",
                # Static, not BGP: the floating IP is the network node's business.
                f"route add {floating}/32 via {outer_node}",
            ],
            namespace=internet,
        )
        netns.batch(
            [
                f"addr add {inner_gateway}/31 dev {NETNODE_INNER_LINK}",
                f"link set {NETNODE_INNER_LINK} up",
            ],
            namespace=gateway,
        )
        netns.configure_many(
            {
                node: (
                    netns.FORWARDING,
                    [
                        "link set lo up",
                        f"addr add {outer_node}/31 dev {NETNODE_OUTER_LINK}",
                        f"link set {NETNODE_OUTER_LINK} up",
                        f"addr add {inner_node}/31 dev {NETNODE_INNER_LINK}",
                        f"link set {NETNODE_INNER_LINK} up",
                        f"route add default via {outer_router}",
                        f"route add {self.public} via {inner_gateway}",
                    ],
                )
            }
        )
        ruleset = f"""
table ip {NAT_TABLE} {{
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    iifname "{NETNODE_OUTER_LINK}" ip daddr {floating} dnat to {vm_address}
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "{NETNODE_INNER_LINK}" ct status dnat snat to {inner_node}
  }}
}}
"""
        netns.run(netns.exec_args(node, ["nft", "-f", "-"]), stdin=ruleset)
        return str(floating)

    # Throughput and latency -------------------------------------------------------

    def compare_paths(self, vm_ns: str, address: str, floating: str) -> dict[str, Any]:
        targets = {"l3": address, "dnat": floating}
        gbit: dict[str, list[float]] = {"l3": [], "dnat": []}
        rtt: dict[str, list[float]] = {"l3": [], "dnat": []}
        ttl: dict[str, int | None] = {}
        for r in range(self.opts.rounds):
            # Alternate who goes first, so drift in the machine's load hits both.
            order = ["l3", "dnat"] if r % 2 == 0 else ["dnat", "l3"]
            for path in order:
                gbit[path].append(self.iperf(vm_ns, address, targets[path]))
                median_ms, ttl[path] = self.ping(targets[path])
                rtt[path].append(median_ms)
        l3_gbit, dnat_gbit = statistics.mean(gbit["l3"]), statistics.mean(gbit["dnat"])
        l3_rtt, dnat_rtt = statistics.mean(rtt["l3"]), statistics.mean(rtt["dnat"])
        return {
            "l3_gbit_s": round(l3_gbit, 2),
            "dnat_gbit_s": round(dnat_gbit, 2),
            "l3_over_dnat_gbit": round(l3_gbit / dnat_gbit, 3),
            "l3_rtt_ms": round(l3_rtt, 4),
            "dnat_rtt_ms": round(dnat_rtt, 4),
            "l3_over_dnat_rtt": round(l3_rtt / dnat_rtt, 3),
            "l3_reply_ttl": ttl["l3"],
            "dnat_reply_ttl": ttl["dnat"],
        }

    def iperf(self, vm_ns: str, bind: str, target: str) -> float:
        """One iperf3 TCP stream from the client to ``target``; Gbit/s received."""
        server = _start(
            vm_ns,
            ["iperf3", "-s", "-1", "--forceflush", "-B", bind, "-p", str(IPERF_PORT)],
            ready="listening",
        )
        try:
            argv = ["iperf3", "-c", target, "-p", str(IPERF_PORT), "-t", str(self.opts.duration)]
            done = probe.run_in(self.client_ns, [*argv, "-J"], timeout=self.opts.duration + 20)
            if done.returncode != 0:
                raise BenchError(f"iperf3 to {target} failed: {done.stdout[-300:]} {done.stderr}")
            report = json.loads(done.stdout)
            return report["end"]["sum_received"]["bits_per_second"] / 1e9
        finally:
            _stop(server)

    def ping(self, target: str) -> tuple[float, int | None]:
        """Median RTT (ms) of ``pings`` echo requests 10 ms apart, and the reply TTL."""
        count = self.opts.pings
        argv = ["ping", "-n", "-c", str(count), "-i", "0.01", "-W", "1", target]
        out = probe.run_in(self.client_ns, argv, timeout=count * 0.05 + 10).stdout
        times = [float(t) for t in _TIME.findall(out)]
        if len(times) < count // 2:
            raise BenchError(f"ping {target}: only {len(times)} of {count} replies")
        ttl = _TTL.search(out)
        return statistics.median(times), int(ttl.group(1)) if ttl else None

    # Boot to reachable ------------------------------------------------------------

    def boot_to_reachable(self, dhcp: str | None = None) -> dict[str, Any]:
        """Boot ``vms`` VMs, each timed until reachable; with ``dhcp`` (the client),
        ``lab boot --dhcp``: the figures are named ``dhcp_...``."""
        seconds: list[float] = []
        boot_calls: list[float] = []
        steps: dict[str, list[float]] = {"active": [], "lease": []}  # --dhcp: where it went
        unreachable: list[str] = []
        for i in range(self.opts.vms):
            name = f"d{i}" if dhcp else f"b{i}"
            host = self.hosts[i % len(self.hosts)]
            t0 = time.monotonic()
            try:
                record = boot.boot(self.plan, self.state, name, ["public"], host, [], dhcp=dhcp)
            except LabError as exc:  # no lease: unreachable, as a VM that never answers
                log.warning("%s on %s: %s", name, host, exc)
                unreachable.append(name)
                seconds.append(float(self.opts.timeout))
                continue
            boot_calls.append(time.monotonic() - t0)
            for step, took in record.get("dhcp_seconds", {}).items():
                steps[step].append(took)
            address = record["ports"][0]["fixed_ips"][0]["ip_address"]
            listener = _start_listener(vm_namespace(self.plan.lab, name), address)
            try:
                reached = self.connect_until(address, t0 + self.opts.timeout)
                if reached is None:
                    log.warning(
                        "%s (%s on %s) not reachable within %d s; no route in: %s; listener %s",
                        name,
                        address,
                        host,
                        self.opts.timeout,
                        ", ".join(self.without_route(address, host)) or "none",
                        "running" if listener.poll() is None else f"exited {listener.returncode}",
                    )
            finally:
                _stop(listener)
            if reached is None:
                unreachable.append(name)
                seconds.append(float(self.opts.timeout))
            else:
                seconds.append(reached - t0)
                if dhcp and reached - t0 > DHCP_SLOW_S:
                    log.info(
                        "%s on %s: %.2f s (%s)",
                        name,
                        host,
                        reached - t0,
                        record.get("dhcp_seconds"),
                    )
        figures = {
            "boot_to_reachable_p50_s": round(percentile(seconds, 50), 3),
            "boot_to_reachable_p99_s": round(percentile(seconds, 99), 3),
            "boot_to_reachable_max_s": round(max(seconds), 3),
            "boot_call_p50_s": round(percentile(boot_calls, 50), 3) if boot_calls else None,
            "unreachable": len(unreachable),
        }
        if dhcp:
            for step, values in steps.items():
                # Boot's wait for ACTIVE, then the DHCP client until it has its lease.
                figures[f"{step}_p50_s"] = round(percentile(values, 50), 3) if values else None
            return {f"dhcp_{key}": value for key, value in figures.items()}
        return {"vms": self.opts.vms, **figures}

    def connect_until(self, address: str, deadline: float) -> float | None:
        """The moment a TCP connect from the internet client first succeeds; None at ``deadline``."""
        with entered(self.client_ns):
            while time.monotonic() < deadline:
                try:
                    with socket.create_connection((address, LISTEN_PORT), timeout=CONNECT_TRY_S):
                        return time.monotonic()
                except OSError:
                    # No route yet (ICMP unreachable), no listener yet (RST), or a lost SYN.
                    time.sleep(RETRY_S)
        return None


def _ipv4_sessions_up(ctl: Path) -> int:
    """How many established BGP sessions of the BIRD behind ``ctl`` carry IPv4."""
    return sum(1 for p in bird.protocols(ctl) if p.established and "ipv4" in p.routes)


def _start(ns: str, argv: list[str], ready: str) -> subprocess.Popen[bytes]:
    """Start ``argv`` in ``ns`` and wait (bounded) until its output contains ``ready``."""
    proc = subprocess.Popen(
        netns.exec_args(ns, argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + START_TIMEOUT_S
    seen = b""
    # Raw reads: a buffered readline could swallow the ready line while select waits.
    while ready.encode() not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        seen += chunk
    else:
        return proc
    _stop(proc)
    raise BenchError(f"{argv[0]} in {ns} did not start: {seen.decode(errors='replace')[-300:]}")


def _start_listener(ns: str, address: str) -> subprocess.Popen[bytes]:
    """A TCP listener on ``address`` in the VM, accepting one connection (the probe's)."""
    return subprocess.Popen(
        netns.exec_args(
            ns,
            [
                "socat",
                "-u",
                f"TCP4-LISTEN:{LISTEN_PORT},bind={address},reuseaddr",
                "OPEN:/dev/null",
            ],
        ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()
