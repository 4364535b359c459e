"""Part ``gateway`` of ``l3fabric bench routes``: what one port change costs the gateway agent to compute.

The gateway's watch holds every bound port of the fabric (its BIRD filters
and origin checks name each one: docs/gateway.md), so each port change is a
pass that computes the gateway's whole desired state and BIRD config. This
part times that computation, pure and in process (no namespace, no BIRD):
``gateway.plan.desired_state`` and ``plan`` (which renders the config to
compare it with the one BIRD runs) for a fabric of ``GATEWAY_HOSTS`` hosts in
their own AS behind a ToR (the gateway's ToR session checks origins: one ROA
entry per port, the largest config), ``count`` bound IPv4 ports spread over
them, and a public network.

- ``gateway_pass_first_s``: the first pass of the process (nothing parsed yet);
- ``gateway_pass_s``: then ``samples`` (5) times one more port bound, a pass
  each; the median. Each must yield one BIRD configure, else the part fails;
- ``gateway_pass_small_s``: the same with ``SMALL_FABRIC`` (100) ports, in
  the same run, and ``gateway_pass_over_small`` = ``gateway_pass_s`` /
  ``gateway_pass_small_s``: how a change's cost grows with the fabric.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from typing import Any

from l3fabric.client import HostState
from l3fabric.gateway.observed import GatewayObserved
from l3fabric.gateway.ops import GatewayBirdConfigure
from l3fabric.gateway.plan import desired_state, plan
from l3fabric.model.fabric import FabricConfig
from l3fabric.routing.bird_config import render

GATEWAY_HOSTS = 100
SMALL_FABRIC = 100
GATEWAY = "gw1"
TOR_AS = 65101
PUBLIC_CIDR = "10.128.0.0/9"


def _port(index: int, hosts: int) -> dict[str, Any]:
    host = index % hosts
    address = f"10.{128 + index // 65536}.{index // 256 % 256}.{index % 256}"
    return {
        "id": f"port-{index}",
        "network_id": "public",
        "binding:host_id": f"host-{host}",
        "fixed_ips": [{"subnet_id": "public-v4", "ip_address": address}],
    }


def fabric_view(ports: int, hosts: int = GATEWAY_HOSTS) -> HostState:
    """A gateway's cache: ``hosts`` in their own AS behind one ToR, ``ports`` bound ports."""
    fabric = FabricConfig.model_validate({"host_asn": "per-host"}).model_dump(mode="json")
    gateway = {
        "name": GATEWAY,
        "router_id": "172.17.0.1",
        "fabric_addresses": ["172.16.0.0"],
        "infrastructure": ["172.16.0.0/16", "172.17.0.0/16"],
        "fabric_peers": [{"name": "tor", "address": "172.16.0.1", "asn": TOR_AS}],
        "upstream": [{"name": "isp", "address": "192.0.2.1", "asn": 64496}],
    }
    return HostState(
        fabric=fabric,
        gateways={GATEWAY: gateway},
        hosts={
            f"host-{h}": {
                "name": f"host-{h}",
                "router_id": f"172.17.{1 + h // 250}.{h % 250 + 1}",
                "address": f"172.18.{h // 250}.{h % 250 + 1}",
                "asn": 4200000000 + h,
            }
            for h in range(hosts)
        },
        networks={"public": {"id": "public", "router:external": True}},
        subnets={
            "public-v4": {
                "id": "public-v4",
                "network_id": "public",
                "cidr": PUBLIC_CIDR,
                "ip_version": 4,
            }
        },
        ports={p["id"]: p for p in (_port(i, hosts) for i in range(ports))},
    )


def _pass(view: HostState, observed: GatewayObserved) -> tuple[float, GatewayObserved, bool]:
    """One pass's computation: seconds, what the gateway holds after it, whether BIRD changed."""
    started = time.perf_counter()
    desired = desired_state(GATEWAY, view, observed)
    ops = plan(desired, observed)
    configure = [op for op in ops if isinstance(op, GatewayBirdConfigure)]
    text = render(configure[0].config) if configure else observed.bird_text
    took = time.perf_counter() - started
    if desired.errors:
        raise RuntimeError(
            f"bench routes: the gateway's desired state has errors: {desired.errors}"
        )
    policy = desired.routing.desired if desired.routing else None
    after = replace(observed, bird_running=True, bird_text=text, bird_policy=policy)
    return took, after, bool(configure)


def _one_more_port(ports: int, samples: int) -> tuple[float, list[float]]:
    """The first pass over ``ports`` ports, then ``samples`` passes of one port more each."""
    view = fabric_view(ports)
    first, observed, _ = _pass(view, GatewayObserved(fabric_ready=True))
    times = []
    for i in range(samples):
        port = _port(ports + i, GATEWAY_HOSTS)
        view.ports[port["id"]] = port
        took, observed, configured = _pass(view, observed)
        if not configured:
            raise RuntimeError("bench routes: a new port did not change the gateway's BIRD config")
        times.append(took)
    return first, times


def gateway_pass(count: int, samples: int) -> dict[str, Any]:
    """The part's keys (module docstring)."""
    first, times = _one_more_port(count, samples)
    _, small = _one_more_port(SMALL_FABRIC, samples)
    median, median_small = statistics.median(times), statistics.median(small)
    return {
        "gateway_pass_first_s": round(first, 6),
        "gateway_pass_s": round(median, 6),
        "gateway_pass_max_s": round(max(times), 6),
        "gateway_pass_small_s": round(median_small, 6),
        "gateway_pass_over_small": round(median / median_small, 2),
    }
