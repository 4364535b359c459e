"""The demo's gateway-pair check: a private VM's long-lived connections survive their gateway.

A small lab of its own beside the demo's data centre (``<name>p``: one host
under two gateways sharing the SNAT pool and their NAT state, one internet
client), so the main topology keeps its single gateway: four connections
from a private VM, a line each way every 100 ms; the gateway carrying most
of them freezes for 2 s. Pass: every connection goes on, the longest
silence under 1 s. About 20 s, the lab removed after.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from l3fabric.lab import boot, faults, gateway_pair
from l3fabric.lab import long_flows as lf
from l3fabric.lab.credentials import lab_client
from l3fabric.lab.down import down
from l3fabric.lab.gateway_pair import POOL, client_address
from l3fabric.lab.probe import wait_reachable
from l3fabric.lab.state import LabState
from l3fabric.lab.up import up

FLOWS = 4
HOLD_S = 2.0
PORT = 7300


def check_pair_failover(lab: str, check: Callable[[str, str, bool], None]) -> None:
    """Run the check in lab ``lab`` + "p"; reports one row through ``check``."""
    name = lab[:9] + "p"  # lab names: at most 10 characters
    try:
        plan = up(gateway_pair.topology(name, hosts=1, clients=1))
        state = LabState(name)
        with lab_client(plan) as api:
            net = api.create_network(name="private")
            api.create_subnet(network_id=net["id"], cidr="10.1.0.0/24", ip_version=4)
        vm = boot.boot(plan, state, "vm1", ["private"], "r1-h1", [], None, None)
        ns = state.vms()["vm1"]["namespace"]
        target = client_address(plan, "client1")
        if wait_reachable(ns, target, timeout=30) is None:
            raise RuntimeError(f"{vm['name']} does not reach the internet client")
        gateway_pair.whole(plan, POOL)
        server = lf.start(lf.server_argv(plan.node("client1").namespace, PORT))
        try:
            lf.wait_line(server, "ready", 30)
            client = lf.start(lf.client_argv(ns, target, PORT, FLOWS, HOLD_S + 3.0))
            lf.wait_line(client, "connected", 30)
            gateway = gateway_pair.busiest(plan)
            with faults.gateway_frozen(plan, state, gateway):
                time.sleep(HOLD_S)
            flows = lf.parse_client(lf.finish(client, 30))
        finally:
            lf.stop(server)
        alive = [f for f in flows if f.ok]
        gap = max((f.gap_s for f in alive), default=0.0)
        check(
            "gateway pair: a private VM's connections survive their gateway's failure",
            f"{len(alive)}/{FLOWS} TCP connections went on through {gateway} frozen {HOLD_S:.0f} s;"
            f" longest silence {gap:.2f} s",
            len(alive) == FLOWS == len(flows) and gap < 1.0,
        )
    except Exception as exc:  # a row that fails, not a crashed demo
        check(
            "gateway pair: a private VM's connections survive their gateway's failure",
            f"error: {exc}",
            False,
        )
    finally:
        down(name)
