"""``bench gateway``: a gateway pair with shared NAT state, through a failure and at full speed.

A lab of its own (``bg<tag>``: two hosts under gateways gw1 and gw2, the
shared SNAT pool ``POOL`` with the ports split, conntrackd over the sync
link; two internet clients), two private VMs (one per host).

Options (``--set``): ``flows`` (200), ``hold_s`` (3), ``rate_s`` (2),
``stream_s`` (2).

- ``flows`` (200) long-lived TCP connections from the VMs to client1, a
  line each way every 100 ms (``lab/long_flows.py``); the gateway carrying
  most of them freezes for ``hold_s`` (3 s: every packet on its links
  dropped, BIRD and conntrackd stopped). ``flows_survived_pct`` (target
  100) and ``max_gap_s``: the longest silence of any connection in either
  direction (target under 1).
- ``new_conn_per_s_two`` and ``new_conn_per_s_one``: connections opened one
  after another from both VMs for ``rate_s`` (2 s) through both gateways,
  then with one drained (all through one), same run; two rounds, alternated,
  each rate the mean of its two samples. Their ratio shows
  whether the pair costs new connections anything (each is one sync
  message; its replies that come back through the other gateway are
  steered to it, gateway/steer.py). One connection at a time per VM: the
  rate is bound by latency, not by either gateway's capacity.
  ``new_conn_retrans_two`` and ``_one``: the VMs' TCP retransmissions
  (SYNs included) meanwhile: a reply lost to a race with the sync shows
  here as a retransmission (0 expected).
- ``nat_gbit_s_synced`` and ``nat_gbit_s_unsynced``: one iperf3 stream
  (``stream_s``, 2 s) from a VM to client2, translated, with conntrackd
  running and then stopped on both gateways; target ratio at least 0.9.
  ``NAT_ROUNDS`` (3) samples of each, alternated (conntrackd restarted with
  the agent's config before each synced one), each rate their median: one
  pair of samples swung from 0.90 to 1.04 between runs on the shared machine.
  Both with gw2 drained, so the stream crosses gw1 both ways: unsynced, a
  stream whose replies take the other gateway gets nothing through (0.0
  measured) and the ratio would say nothing about the sync's cost.

The lab is removed afterwards, also after a failure.
"""

from __future__ import annotations

import json
import secrets
import statistics
import time
from collections.abc import Iterable
from typing import Any

from l3fabric.bench.parts import OptionReader, alternated, require_root, run_parts
from l3fabric.gateway.conntrackd import Conntrackd
from l3fabric.lab import boot, faults, gateway_pair
from l3fabric.lab import long_flows as lf
from l3fabric.lab.credentials import lab_client
from l3fabric.lab.down import down
from l3fabric.lab.gateway_pair import POOL, client_address
from l3fabric.lab.plan import Plan
from l3fabric.lab.probe import run_in
from l3fabric.lab.state import LabState
from l3fabric.lab.up import up

PORT = 7200
RATE_ROUNDS = 2  # alternated samples of each connection rate
NAT_ROUNDS = 3  # alternated samples of each NAT stream rate (synced, unsynced)
VMS = {"vm1": "r1-h1", "vm2": "r1-h2"}


def prepare(plan: Plan) -> dict[str, str]:
    """A private network with one VM per host; their namespaces, once they reach the internet."""
    state = LabState(plan.lab)
    with lab_client(plan) as api:
        net = api.create_network(name="priv")
        api.create_subnet(network_id=net["id"], cidr="10.1.0.0/24", ip_version=4)
    for vm, host in VMS.items():
        boot.boot(plan, state, vm, ["priv"], host, [], None, None)
    namespaces = {vm: state.vms()[vm]["namespace"] for vm in VMS}
    client = client_address(plan, "client1")
    deadline = time.monotonic() + 30
    for ns in namespaces.values():
        while run_in(ns, ["ping", "-c1", "-W1", client], 5).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ns} does not reach {client}")
    gateway_pair.whole(plan, POOL)
    return namespaces


def long_flows(plan: Plan, vms: dict[str, str], flows: int, hold_s: float) -> dict[str, Any]:
    client1 = plan.node("client1").namespace
    server = lf.start(lf.server_argv(client1, PORT))
    procs = []
    duration = hold_s + 5.0
    try:
        lf.wait_line(server, "ready", 30)
        share = [flows // len(vms) + (i < flows % len(vms)) for i in range(len(vms))]
        target = client_address(plan, "client1")
        for ns, count in zip(vms.values(), share, strict=True):
            procs.append(lf.start(lf.client_argv(ns, target, PORT, count, duration)))
        for proc in procs:
            lf.wait_line(proc, "connected", 60)
        time.sleep(1.0)
        gateway = gateway_pair.busiest(plan)
        with faults.gateway_frozen(plan, LabState(plan.lab), gateway):
            time.sleep(hold_s)
        out = "".join(lf.finish(proc, duration + 30) for proc in procs)
        time.sleep(0.5)
    finally:
        for proc in procs:
            lf.stop(proc)
        server_out = lf.stop(server)
    client, back = lf.parse_client(out), lf.parse_server(server_out)
    alive = [f for f in client if f.ok]
    return {
        "flows": flows,
        "failed_gateway": gateway,
        "flows_survived_pct": round(100.0 * len(alive) / flows, 2),
        "max_gap_s": round(max((f.gap_s for f in alive + back), default=0.0), 3),
    }


def retransmissions(namespaces: Iterable[str]) -> int:
    """TCP segments the VMs retransmitted so far (``RetransSegs``; SYNs included)."""
    total = 0
    for ns in namespaces:
        lines = [ln.split() for ln in run_in(ns, ["cat", "/proc/net/snmp"], 10).stdout.splitlines()]
        names, values = [ln for ln in lines if ln and ln[0] == "Tcp:"][:2]
        total += int(values[names.index("RetransSegs")])
    return total


def connection_rate(plan: Plan, vms: dict[str, str], seconds: float) -> tuple[float, int]:
    """New connections per second, all VMs together, and the VMs' retransmissions meanwhile."""
    server = lf.start(lf.server_argv(plan.node("client1").namespace, PORT + 1))
    try:
        lf.wait_line(server, "ready", 30)
        target = client_address(plan, "client1")
        before = retransmissions(vms.values())
        procs = [lf.start(lf.rate_argv(ns, target, PORT + 1, seconds)) for ns in vms.values()]
        results = [lf.parse_rate(lf.finish(p, seconds + 30)) for p in procs]
        retransmitted = retransmissions(vms.values()) - before
    finally:
        lf.stop(server)
    rate = round(sum(done for done, _, _ in results) / max(s for _, _, s in results), 1)
    return rate, retransmitted


def alternated_rates(
    plan: Plan, vms: dict[str, str], seconds: float, rounds: int = RATE_ROUNDS
) -> tuple[float, int, float, int]:
    """(rate, retransmissions) through both gateways, then through gw1 alone (gw2 drained).

    ``rounds`` samples of each, alternated (``parts.alternated``); the rates
    are the samples' means.
    """

    def through_one() -> tuple[float, int]:
        with gateway_pair.drained(plan, "gw2", POOL):
            sample = connection_rate(plan, vms, seconds)
        gateway_pair.whole(plan, POOL)
        return sample

    two, one = alternated(rounds, lambda: connection_rate(plan, vms, seconds), through_one)
    return (
        round(sum(r for r, _ in two) / rounds, 1),
        sum(n for _, n in two),
        round(sum(r for r, _ in one) / rounds, 1),
        sum(n for _, n in one),
    )


def stream_gbit_s(plan: Plan, vm_ns: str, seconds: float) -> float:
    """One iperf3 stream from the VM to client2, through the NAT."""
    server = lf.start(
        [
            "ip",
            "netns",
            "exec",
            plan.node("client2").namespace,
            "iperf3",
            "-s",
            "-1",
            "--forceflush",
        ]
    )
    try:
        lf.wait_line(server, "Server listening", 30)
        target = client_address(plan, "client2")
        argv = ["iperf3", "-c", target, "-t", str(seconds), "-J"]
        done = run_in(vm_ns, argv, seconds + 30)
        report = json.loads(done.stdout)
        if "error" in report:
            raise RuntimeError(f"iperf3: {report['error']}")
    finally:
        lf.stop(server)
    return round(report["end"]["sum_received"]["bits_per_second"] / 1e9, 3)


def alternated_streams(
    plan: Plan, state: LabState, vm_ns: str, seconds: float, rounds: int = NAT_ROUNDS
) -> tuple[float, float]:
    """(synced, unsynced) stream Gbit/s: ``rounds`` samples of each, alternated, their medians."""
    daemons = [
        Conntrackd(state.agent_dir(gw), plan.node(gw).namespace) for gw in gateway_pair.GATEWAYS
    ]
    configs = [d.config_path.read_text() for d in daemons]

    def synced_stream() -> float:
        for daemon, text in zip(daemons, configs, strict=True):
            daemon.apply(text)  # running again (a no-op when it runs)
        return stream_gbit_s(plan, vm_ns, seconds)

    synced, unsynced = alternated(
        rounds, synced_stream, lambda: unsynced_stream(plan, daemons, vm_ns, seconds)
    )
    return statistics.median(synced), statistics.median(unsynced)


def unsynced_stream(plan: Plan, daemons: list[Conntrackd], vm_ns: str, seconds: float) -> float:
    """One stream with conntrackd stopped on both gateways throughout.

    A gateway agent's pass restarts a conntrackd it finds stopped: a sample
    during which that happened was partly synced, and is taken again.
    """
    for _ in range(3):
        for daemon in daemons:
            daemon.stop()
        rate = stream_gbit_s(plan, vm_ns, seconds)
        if all(daemon.pid() is None for daemon in daemons):
            return rate
    raise RuntimeError("conntrackd was restarted during every unsynced stream")


def pair(opts: OptionReader) -> dict[str, Any]:
    flows = opts.integer("flows", 200, 2, 2000)
    hold_s = opts.integer("hold_s", 3, 1, 30)
    rate_s = opts.integer("rate_s", 2, 1, 60)
    stream_s = opts.integer("stream_s", 2, 1, 60)
    name = "bg" + secrets.token_hex(3)
    try:
        plan = up(gateway_pair.topology(name, hosts=2, clients=2))
        vms = prepare(plan)
        result = long_flows(plan, vms, flows, hold_s)
        gateway_pair.whole(plan, POOL, settle_s=3.0)
        two, retrans_two, one, retrans_one = alternated_rates(plan, vms, rate_s)
        vm = next(iter(vms.values()))
        # Both streams through gw1 alone, both ways: without the sync a flow
        # whose reply takes the other gateway has no state there at all.
        with gateway_pair.drained(plan, "gw2", POOL):
            synced, unsynced = alternated_streams(plan, LabState(name), vm, stream_s)
    finally:
        down(name)
    return {
        **result,
        "hold_s": hold_s,
        "new_conn_per_s_two": two,
        "new_conn_per_s_one": one,
        "new_conn_ratio_two_over_one": round(two / one, 3) if one else None,
        "new_conn_retrans_two": retrans_two,
        "new_conn_retrans_one": retrans_one,
        "nat_gbit_s_synced": synced,
        "nat_gbit_s_unsynced": unsynced,
        "nat_synced_over_unsynced": round(synced / unsynced, 3) if unsynced else None,
    }


def run(options: dict[str, str]) -> dict[str, Any]:
    require_root("gateway")
    opts = OptionReader("gateway", options, {"flows", "hold_s", "rate_s", "stream_s"})
    return run_parts("gateway", options, {"pair": pair}, opts)
