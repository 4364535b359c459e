"""``l3fabric bench routes``: endpoint routes, from programming to a BGP peer's kernel.

Parts are functions ``(context) -> dict`` in ``PARTS``; ``run`` merges their
results. ``--set parts=program`` selects parts; ``count`` (10,000),
``taps`` (100, part a), ``rounds`` (3, part a), ``timeout`` (600 s, part b/c),
``samples`` (5, part b/c) are the other options.

Part ``program`` (a): in a fresh namespace ``l3f-bench-<tag>``, ``count`` /32
routes spread over ``taps`` veth taps are programmed by
``EndpointRoutes.converge`` (the agent's code path: kernel dump, diff, batched
writes, every ack checked), removed again, then added by ``ip -n NS -batch``.
Each is run ``rounds`` times; the medians are reported. 100 taps, not one per
route: the routes are measured here, and 100 distinct output devices still
exercise the per-device lookups.

Part ``converge`` (b and c), the whole system on one host: a controller
(``l3fabric server`` on a temporary SQLite file) holds ``count`` ports bound
to host ``bench``, whose namespace ``l3f-bench-<tag>-host`` has one veth tap
per port (set up untimed; the taps are left down, as a hypervisor plugs
them, so bringing them up is the agent's work). The host is registered with
one BGP peer: a BIRD in ``l3f-bench-<tag>-peer`` (AS 65000, like a gateway)
across a veth. Then the real agent is started (``ip netns exec HOST
l3fabric agent``, a new process) and the route counts of both kernels are
polled:

- ``converge_s``: agent start until the host's kernel holds every endpoint
  route (it includes the interpreter's start-up and the first snapshot);
- ``bgp_propagation_s``: from that moment until the peer's kernel holds them
  all. The agent starts BIRD at the beginning of its first pass, so BIRD's
  start and the BGP session's set-up overlap with the programming; whatever
  of them is left over is in here;
  ``bgp_session_s`` and ``bgp_transfer_s`` split it at the moment the peer saw
  the session established;
- ``add_one_s``: then one more port is created and its tap plugged; from the
  plug until the peer's kernel holds its route (one incremental pass at
  ``count`` ports; its announcement is one blackhole route BIRD learns,
  ``add_one_announce_s``). ``samples`` (5) ports are added one after another
  and the medians are reported (``add_one_min_s``, ``add_one_max_s``; step
  times from the agent's ``passes.json``, ``add_one_pass_cpu_s`` its CPU
  time): bench/routes_add_one.py says how each is taken (the plug in
  process, the peer's route seen by a netlink monitor, not a poll).

The VM ends have IPv6 off (the VMs are IPv4; ``VMS_IPV6_OFF`` says why).
The taps (both ends) are made without kernel IPv6 link-local addresses
(``addr_gen_mode`` 1; ``--set link_local=1`` for the old conditions): their
duplicate address detection kept the kernel busy for ~90 s at 10,000 taps.
With ``settle`` (the default, ``--set settle=0`` to skip) the agent starts
on a settled host: the benchmark waits (untimed, ``setup_settle_s``) until
no IPv6 address of the host is tentative (without link-locals: none is).
``pass_<step>_s`` are the first pass's step times from the agent's log.

Part ``gateway``: what one port change costs the gateway agent to compute
at ``count`` bound ports (``gateway_pass_s``) and at 100
(``gateway_pass_small_s``), and their ratio; bench/routes_gateway.py.

Everything is removed afterwards, also after a failure: processes, BIRDs,
namespaces, the temporary directory.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from l3fabric.addresses import parse_address
from l3fabric.bench import routes_add_one as add_one
from l3fabric.bench import routes_gateway
from l3fabric.bench.parts import OptionReader, require_root, run_parts
from l3fabric.bench.routes_add_one import passes as _agent_passes
from l3fabric.client import FabricClient
from l3fabric.dataplane import netns as netns_mod
from l3fabric.dataplane import sysctl
from l3fabric.dataplane.links import tap_name
from l3fabric.dataplane.netlink_batch import (
    RouteSocket,
)
from l3fabric.dataplane.routes import RTPROT_L3FABRIC, EndpointRoutes
from l3fabric.lab.netns import stop_processes
from l3fabric.loopback import free_port
from l3fabric.routing.bird_config import BgpPeer, BirdConfig, Policy, render
from l3fabric.routing.bird_process import ROUTING_NICE, BirdProcess
from l3fabric.service.common import DEFAULT_PROJECT

Result = dict[str, float | int]

FIRST_ADDRESS = ipaddress.IPv4Address("10.128.0.0")
RTPROT_BIRD = add_one.RTPROT_BIRD
HOST = "bench"
HOST_AS, PEER_AS = 65001, 65000
# The /30 between the host and its peer (documentation range, only inside our namespaces).
HOST_ADDRESS, PEER_ADDRESS = "192.0.2.1", "192.0.2.2"
# The controller also listens inside the host namespace, on its own loopback.
API_IN_HOST = "127.0.0.1:9696"
POLL_S = 0.01
# New links of a namespace with this get no kernel-generated IPv6 link-local
# address (addr_gen_mode 1, "none"), so no duplicate address detection either.
NO_LINK_LOCAL = {"net.ipv6.conf.default.addr_gen_mode": "1"}
# The VM ends of the taps share one namespace here, where each VM has its own
# kernel. With IPv6 on, each would add a route (ff00::/8) to that namespace,
# and the kernel walks all of a namespace's IPv6 routes when a link in it
# comes up: every plug paid ~5 ms for the other 10,000 VMs (under the RTNL
# lock, which delays every route write on the machine). The VMs are IPv4.
VMS_IPV6_OFF = {"net.ipv6.conf.default.disable_ipv6": "1"}
# Ports per bulk POST: ~126 bytes each, under the server's 114,688-byte body limit.
BULK_PORTS = 800
SERVER_START_S = 20.0
# ``add_one_small_s``: the same one-port measurement on a host with this many.
SMALL_HOST = 100
# After the controller shows every port ACTIVE: time for the agent to take the echo.
ECHO_QUIET_S = 1.0


@dataclass
class Context:
    """What every part gets: its options and a tag for the names of what it creates."""

    count: int
    taps: int
    rounds: int
    timeout: float
    tag: str
    settle: bool = True  # parts b/c: start the agent on a settled host (see converge)
    link_local: bool = False  # parts b/c: taps get kernel link-local addresses (see converge)
    samples: int = 5  # parts b/c: ports added one after another for add_one_s (the median)

    def netns(self, role: str = "") -> str:
        return f"l3f-bench-{self.tag}" + (f"-{role}" if role else "")


def _ip_batch(netns: str, lines: list[str]) -> float:
    """Run ``ip -n NS -batch`` on ``lines``; the wall time in seconds."""
    with tempfile.NamedTemporaryFile("w", prefix="l3f-bench-", suffix=".batch") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()
        start = time.perf_counter()
        done = subprocess.run(
            ["ip", "-n", netns, "-batch", f.name], capture_output=True, text=True, timeout=300
        )
        elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"ip -batch failed: {done.stderr.strip()[:500]}")
    return elapsed


def _add_taps(netns: str, taps: list[str], up: bool, vm_netns: str | None = None) -> float:
    """One veth pair per tap in ``netns``, the VM ends up (in ``vm_netns`` if given); seconds."""
    lines, vm_lines = [], []
    for i, tap in enumerate(taps):
        peer = f"l3fbv{i:07d}"
        if vm_netns is None:
            lines += [f"link add {tap} type veth peer name {peer}", f"link set {peer} up"]
        else:
            lines.append(f"link add {tap} type veth peer name {peer} netns {vm_netns}")
            vm_lines.append(f"link set {peer} up")
        if up:
            lines.append(f"link set {tap} up")
    return _ip_batch(netns, lines) + (_ip_batch(vm_netns, vm_lines) if vm_netns else 0.0)


@contextlib.contextmanager
def _namespace(name: str) -> Iterator[str]:
    netns_mod.create(name)
    try:
        yield name
    finally:
        # Its processes first: a dnsmasq the agent started outlives the agent.
        stop_processes([name])
        netns_mod.delete(name)


# Part (a) -----------------------------------------------------------------------


def program(ctx: Context) -> Result:
    """Part (a): ``program_s`` against ``ip_batch_s`` for the same routes."""
    with _namespace(ctx.netns()) as ns:
        taps = [f"tapbench{i:06d}" for i in range(ctx.taps)]
        _add_taps(ns, taps, up=True)
        desired = {f"{FIRST_ADDRESS + i}/32": taps[i % len(taps)] for i in range(ctx.count)}
        batch = [f"route add {p} dev {tap} proto {RTPROT_L3FABRIC} scope link" for p, tap in desired.items()]  # fmt: skip
        ours: list[float] = []
        theirs: list[float] = []
        with EndpointRoutes(ns) as routes:
            for _ in range(ctx.rounds):
                start = time.perf_counter()
                plan = routes.converge(desired)
                ours.append(time.perf_counter() - start)
                if len(plan.replace) != ctx.count or len(routes.read()) != ctx.count:
                    raise RuntimeError("route programming did not install every route")
                routes.converge({})
                theirs.append(_ip_batch(ns, batch))
                if len(routes.read()) != ctx.count:
                    raise RuntimeError("ip -batch did not install every route")
                routes.converge({})
    program_s, ip_batch_s = statistics.median(ours), statistics.median(theirs)
    return {
        "count": ctx.count,
        "taps": ctx.taps,
        "program_s": round(program_s, 4),
        "ip_batch_s": round(ip_batch_s, 4),
        "program_over_ip_batch": round(program_s / ip_batch_s, 2),
    }


# Parts (b) and (c) ----------------------------------------------------------------


class _Processes:
    """Child processes with their logs in ``directory``; all stopped on exit."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.log(name), "wb") as log:
            child = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self.children[name] = child
        return child

    def log(self, name: str) -> Path:
        return self.directory / f"{name}.log"

    def tail(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join(self.log(name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def check(self, name: str) -> None:
        code = self.children[name].poll()
        if code is not None:
            raise RuntimeError(f"{name} exited with {code}:\n{self.tail(name)}")

    def stop(self, name: str) -> None:
        """SIGTERM, then SIGKILL after 10 s; harmless for a process that is gone."""
        child = self.children[name]
        if child.poll() is None:
            child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=10)

    def stop_all(self) -> None:
        for name in reversed(list(self.children)):
            self.stop(name)


def _l3fabric(*args: str) -> list[str]:
    return [sys.executable, "-m", "l3fabric.cli", *args]


def _wait_for_server(url: str, procs: _Processes) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        procs.check("server")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the controller did not answer at {url}:\n{procs.tail('server')}")


def _subnet(count: int) -> str:
    # Room for count addresses plus network, gateway and broadcast.
    prefixlen = min(24, 32 - (count + 2).bit_length())
    return f"{FIRST_ADDRESS}/{prefixlen}"


def _make_ports(client: FabricClient, count: int) -> list[str]:
    """``count`` ports bound to the bench host, created in bulk; their ids."""
    net = client.create_network(name="bench")
    client.create_subnet(network_id=net["id"], cidr=_subnet(count), ip_version=4)
    ids: list[str] = []
    while len(ids) < count:
        n = min(BULK_PORTS, count - len(ids))
        body = {
            "ports": [
                {"network_id": net["id"], "binding:host_id": HOST, "device_owner": "compute:bench"}
                for _ in range(n)
            ]
        }
        ids += [p["id"] for p in client.request("POST", "/v2.0/ports", json=body)["ports"]]
    return ids


def _peer_config() -> str:
    host = BgpPeer(
        name="host",
        address=parse_address(HOST_ADDRESS),
        asn=HOST_AS,
        role="h",
        bfd=True,
        import_policy=Policy("all"),
        export_policy=Policy("none"),
    )
    # Retry timers like the gateway agent's BIRD (gateway/bird.py), not BIRD's
    # minutes-long defaults: the peer starts before the host's BIRD.
    config = BirdConfig(
        router_id=parse_address(PEER_ADDRESS, version=4),
        local_as=PEER_AS,
        peers=(host,),
        fast_connect=True,
    )
    return render(config)


def _route_count(sock: RouteSocket, protocol: int) -> int:
    # Counted, not decoded: the poll must not take the CPU it measures.
    return sock.count(socket.AF_INET, protocol)


def _wait_routes(
    sock: RouteSocket,
    protocol: int,
    count: int,
    deadline: float,
    what: str,
    check: Callable[[], None],
) -> float:
    """Poll until ``sock``'s namespace holds ``count`` routes of ``protocol``; when (perf_counter)."""
    while True:
        asked = time.perf_counter()
        n = _route_count(sock, protocol)
        now = time.perf_counter()
        if n >= count:
            return now
        check()
        if now > deadline:
            raise TimeoutError(f"{what}: {n} of {count} routes when the time was up")
        # At most a third of a core for the poll (a count of 10,000 routes
        # takes ~10 ms), so it does not slow down the processes it measures.
        time.sleep(max(POLL_S, 2 * (now - asked)))


def _established_at(bird: BirdProcess) -> float | None:
    """The wall-clock time the peer's BGP session came up (BIRD's ``since``, ms precision)."""
    for proto in bird.control.protocols():
        if proto.established:
            with contextlib.suppress(ValueError):
                return datetime.fromisoformat(proto.since).timestamp()
    return None


def _wait_passes(
    run_dir: Path, deadline: float, check: Callable[[], None], after: int = 0
) -> list[dict[str, Any]]:
    """The agent's passes after pass number ``after``, once one that changed routes is recorded."""
    while True:
        passes = [p for p in _agent_passes(run_dir) if p["number"] > after]
        if any(p["steps"].get("routes") for p in passes):
            return [p for p in passes if p["steps"].get("routes")]
        check()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"no pass recorded in {run_dir / 'passes.json'}")
        time.sleep(POLL_S)


def _wait_active(url: str, count: int, deadline: float, check: Callable[[], None]) -> float:
    """Wait until the controller has ``count`` ACTIVE ports, then ECHO_QUIET_S; seconds waited."""
    start = time.perf_counter()
    with FabricClient(url, timeout=60) as client:
        while True:
            params = {"status": "ACTIVE", "fields": "id"}
            if len(client.request("GET", "/v2.0/ports", params=params)["ports"]) >= count:
                break
            check()
            if time.perf_counter() > deadline:
                raise TimeoutError(f"fewer than {count} ports ACTIVE when the time was up")
            time.sleep(0.5)
    # The agent's watch takes the last of those events a moment later.
    time.sleep(ECHO_QUIET_S)
    return time.perf_counter() - start


def _step_seconds(one_pass: dict[str, Any], step: str) -> float | None:
    found = one_pass.get("steps", {}).get(step)
    return float(found["seconds"]) if found else None


def converge(ctx: Context) -> Result:
    """Parts (b) and (c) at ``count`` ports, and ``add_one_s`` again on a host with 100."""
    result = _system(ctx, ctx.count, "")
    small = _system(ctx, SMALL_HOST, "small-")
    for key, value in small.items():
        if key.startswith("add_one_"):
            result[key.replace("add_one", "add_one_small", 1)] = value
    # From the unrounded medians (a 5 ms median rounded to the ms moves the ratio 10 %).
    result["add_one_over_small"] = round(
        float(result.pop("add_one_raw_s")) / float(result.pop("add_one_small_raw_s")), 2
    )
    return result


def _system(ctx: Context, count: int, role: str) -> Result:
    """Agent start -> host kernel -> the BGP peer's kernel, then one more port, at ``count`` ports."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="l3f-bench-")))
        host_ns = stack.enter_context(_namespace(ctx.netns(f"{role}host")))
        # The VM ends of the taps live apart, as they would inside the VMs: the
        # host's kernel and BIRD see only the taps, as on a real hypervisor.
        vms_ns = stack.enter_context(_namespace(ctx.netns(f"{role}vms")))
        peer_ns = stack.enter_context(_namespace(ctx.netns(f"{role}peer")))
        _link(ctx.tag, host_ns, peer_ns)
        procs = _Processes(tmp)
        stack.callback(procs.stop_all)

        port = free_port()
        procs.start("server", _l3fabric(
            "server", "--store", f"sqlite:///{tmp / 'bench.db'}",
            "--listen", f"127.0.0.1:{port}", "--listen-in", f"{host_ns}={API_IN_HOST}",
        ))  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        _wait_for_server(url, procs)
        started = time.perf_counter()
        with FabricClient(url, timeout=120) as client:
            client.set_fabric({"asn": PEER_AS})
            # More ports than Neutron's default quota (500) in the project they are made in.
            client.set_quota(DEFAULT_PROJECT, port=-1)
            client.register_host(
                HOST,
                router_id=HOST_ADDRESS,
                address=HOST_ADDRESS,
                asn=HOST_AS,
                peers=[{"name": "peer", "address": PEER_ADDRESS, "asn": PEER_AS}],
            )
            ids = _make_ports(client, count)
        ports_s = time.perf_counter() - started
        # No kernel link-local addresses on either end of the taps: a VM's
        # IPv6 is its own business, and the agent gives an IPv6 port's tap
        # fe80::1 itself (without DAD); nothing else uses a tap's link-local
        # (BIRD peers over the uplink, made above with its own). Otherwise
        # 20,000 new links queue ~90 s of DAD work on the kernel's one global
        # IPv6 work queue (under the RTNL lock), which stalls IPv6 in every
        # namespace of the machine and makes BIRD's start take seconds.
        if not ctx.link_local:
            for ns in (host_ns, vms_ns):
                sysctl.ensure(NO_LINK_LOCAL, ns)
        sysctl.ensure(VMS_IPV6_OFF, vms_ns)
        taps_s = _add_taps(host_ns, [tap_name(i) for i in ids], up=True, vm_netns=vms_ns)
        # A settled host: with link-locals, 10,000 taps plugged within seconds
        # keep DAD going for ~90 s (each a netlink event for BIRD): 9,700 were
        # still tentative when the agent started, and BIRD's start took ~9 s
        # instead of 1-2 s. A hypervisor plugs its VMs over time, so by
        # default the agent starts once DAD is done (accept_dad=0 did not
        # help: the work queue is the same).
        settle_s = _settle(host_ns, time.perf_counter() + ctx.timeout) if ctx.settle else 0.0

        # The peer stands for a gateway: its agent starts BIRD the same way.
        peer_bird = BirdProcess("peer", netns=peer_ns, run_dir=str(tmp), nice=ROUTING_NICE)
        # The agent leaves its BIRD running when it stops (forwarding never
        # depends on the agent), so the benchmark stops it itself.
        host_bird = BirdProcess("bird", run_dir=str(tmp / "agent"))
        stack.callback(peer_bird.stop)
        stack.callback(host_bird.stop)
        peer_bird.start(_peer_config())

        host_routes = stack.enter_context(RouteSocket(host_ns))
        peer_routes = stack.enter_context(RouteSocket(peer_ns))
        if _route_count(host_routes, RTPROT_L3FABRIC) or _route_count(peer_routes, RTPROT_BIRD):
            raise RuntimeError("the new namespaces already hold routes")
        deadline = time.perf_counter() + ctx.timeout
        start = time.perf_counter()
        wall_start = time.time()
        procs.start("agent", ["ip", "netns", "exec", host_ns, *_l3fabric(
            "agent", "--host", HOST, "--api", f"http://{API_IN_HOST}",
            "--run-dir", str(tmp / "agent"),
        )])  # fmt: skip
        # Before its BIRD is stopped (callbacks run last-in first-out): an
        # agent still in its first pass would start BIRD again afterwards.
        stack.callback(procs.stop, "agent")

        def agent_alive() -> None:
            procs.check("agent")

        host_done = _wait_routes(host_routes, RTPROT_L3FABRIC, count, deadline, "host kernel", agent_alive)  # fmt: skip
        peer_done = _wait_routes(peer_routes, RTPROT_BIRD, count, deadline, "peer kernel", agent_alive)  # fmt: skip
        established = _established_at(peer_bird)
        run_dir = tmp / "agent"
        # The first pass writes its metrics when it ends, after its announcement.
        passes = _wait_passes(run_dir, deadline, agent_alive)
        # A settled host: the ports' ACTIVE statuses, which the controller
        # writes and sends back as watch events (a second of CPU at 10,000),
        # are not what one more port costs (untimed: setup_echo_s).
        echo_s = _wait_active(url, count, deadline, agent_alive)
        samples = _add_ones(ctx, url, host_ns, vms_ns, peer_ns, peer_routes, run_dir, deadline, agent_alive)  # fmt: skip

    host_done_wall = wall_start + (host_done - start)
    session_s = max(0.0, established - host_done_wall) if established else None
    result: Result = {
        "count": count,
        "converge_s": round(host_done - start, 3),
        "bgp_propagation_s": round(peer_done - host_done, 3),
        "agent_start_to_peer_s": round(peer_done - start, 3),
        "converge_first_pass_s": round(passes[0]["seconds"], 3) if passes else -1,
        "setup_ports_s": round(ports_s, 2),
        "setup_taps_s": round(taps_s, 2),
        "setup_settle_s": round(settle_s, 2),
        "setup_echo_s": round(echo_s, 2),
        "poll_interval_s": POLL_S,
        **add_one.summary(samples, "add_one"),
        "add_one_raw_s": statistics.median(s["s"] for s in samples),
    }
    # Where the first pass spent its time (the agent's pass metrics): pass_taps_s, ...
    for step in passes[0]["steps"] if passes else {}:
        result[f"pass_{step}_s"] = round(_step_seconds(passes[0], step) or 0.0, 3)
    if session_s is not None:
        result["bgp_session_s"] = round(session_s, 3)
        result["bgp_transfer_s"] = round(peer_done - host_done - session_s, 3)
    return result


def _add_ones(
    ctx: Context,
    url: str,
    host_ns: str,
    vms_ns: str,
    peer_ns: str,
    peer_routes: RouteSocket,
    run_dir: Path,
    deadline: float,
    check: Callable[[], None],
) -> list[add_one.Sample]:
    """``ctx.samples`` ports added one after another (bench/routes_add_one.py)."""
    with contextlib.ExitStack() as stack, FabricClient(url, timeout=60) as client:
        (net,) = client.request("GET", "/v2.0/networks", params={"name": "bench"})["networks"]
        plug = add_one.Plug(host_ns, vms_ns)
        stack.callback(plug.close)
        monitor = add_one.RouteMonitor(peer_ns, peer_routes)
        stack.callback(monitor.close)
        one = add_one.AddOne(client, net["id"], HOST, run_dir, plug, monitor, deadline, check)
        return [one.sample(n) for n in range(ctx.samples)]


def _tentative(netns: str) -> int:
    """How many IPv6 addresses in ``netns`` still wait for duplicate address detection."""
    done = subprocess.run(
        ["ip", "-n", netns, "-6", "-o", "addr", "show", "tentative"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return len(done.stdout.splitlines())


def _settle(netns: str, deadline: float) -> float:
    """Wait until no interface of ``netns`` has a tentative IPv6 address; seconds waited."""
    start = time.perf_counter()
    while (left := _tentative(netns)) and time.perf_counter() < deadline:
        time.sleep(0.2)
    if left:
        raise TimeoutError(f"{left} IPv6 addresses in {netns} still tentative")
    return time.perf_counter() - start


def _link(tag: str, host_ns: str, peer_ns: str) -> None:
    """The veth between host and peer, addressed as a /30."""
    host_if, peer_if = f"l3fb{tag}h", f"l3fb{tag}p"
    _ip_batch(host_ns, [
        f"link add {host_if} type veth peer name {peer_if} netns {peer_ns}",
        f"addr add {HOST_ADDRESS}/30 dev {host_if}",
        f"link set {host_if} up",
    ])  # fmt: skip
    _ip_batch(peer_ns, [f"addr add {PEER_ADDRESS}/30 dev {peer_if}", f"link set {peer_if} up"])


def gateway(ctx: Context) -> Result:
    """Part ``gateway``: bench/routes_gateway.py (pure: no namespace)."""
    return routes_gateway.gateway_pass(ctx.count, ctx.samples)


PARTS: dict[str, Callable[[Context], Result]] = {
    "program": program,
    "converge": converge,
    "gateway": gateway,
}


def run(options: dict[str, str]) -> Result:
    """Run the selected parts (default: all) and merge their results."""
    reader = OptionReader(
        "routes", options, {"count", "taps", "rounds", "timeout", "settle", "link_local", "samples"}
    )
    require_root("routes")
    ctx = Context(
        reader.integer("count", 10_000, 1, 1_000_000),
        reader.integer("taps", 100, 1, 4096),
        reader.integer("rounds", 3, 1, 50),
        float(reader.integer("timeout", 600, 1, 3600)),
        secrets.token_hex(3),
        bool(reader.integer("settle", 1, 0, 1)),
        bool(reader.integer("link_local", 0, 0, 1)),
        reader.integer("samples", 5, 1, 100),
    )
    return run_parts("routes", options, PARTS, ctx)
