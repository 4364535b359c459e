"""Gateway pairs as plain data: the shared pool and port slices, the state sync, drain, the CLI."""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
from ipaddress import ip_address, ip_network
from pathlib import Path

import httpx
import pytest

from l3fabric import cli
from l3fabric.client import HostState
from l3fabric.dataplane.nft import digest_of
from l3fabric.gateway.bird import gateway_config, routing_from_state
from l3fabric.gateway.conntrackd import CONNTRACK_SYSCTLS, SyncLink
from l3fabric.gateway.conntrackd import render as conntrackd_conf
from l3fabric.gateway.nat import policy, port_slice, render
from l3fabric.gateway.observed import GatewayObserved
from l3fabric.gateway.ops import SyncSet
from l3fabric.gateway.plan import desired_state, plan
from l3fabric.gateway.steer import ROUTE_TABLE
from l3fabric.model.fabric import GatewayRegistration
from l3fabric.routing.bird_config import StaticRoute
from l3fabric.routing.bird_config import render as bird_render

from .test_bird_config import needs_bird
from .test_gateway_plan import EGRESS, SUBNETS
from .test_gateway_policy import GATEWAY, NETWORKS

POOL = "198.51.100.240/28"
SYNC = {"interface": "l3f-s0", "local": "172.18.0.0", "peer": "172.18.0.1"}
PAIR = {**GATEWAY, "snat_address": None, "snat_pool": POOL, "snat_index": 1, "snat_slices": 2}


def view(**record: object) -> HostState:
    return HostState(
        fabric={"asn": 65000, "peering": "gateway"},
        gateways={"gw1": {**PAIR, **record}},
        hosts={"h1": {"name": "h1", "router_id": "172.17.0.5", "address": "172.16.0.1"}},
        networks=NETWORKS,
        subnets=SUBNETS,
    )


def desired(tmp_path: Path, **record: object):
    return desired_state("gw1", view(**record), GatewayObserved(egress=EGRESS), sync_dir=tmp_path)


def test_port_slices_split_the_ports_without_overlap() -> None:
    for slices in (1, 2, 3, 7):
        ranges = [port_slice(i, slices) for i in range(slices)]
        assert ranges[0][0] == 1024 and ranges[-1][1] == 65535
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))
    with pytest.raises(ValueError, match="below"):
        port_slice(2, 2)


def test_pair_gateways_translate_to_the_shared_pool_each_in_its_own_ports() -> None:
    pool = ip_network(POOL)
    first = render(policy([ip_network("10.1.0.0/24")], ["l3f-u0"], None, pool, port_slice(0, 2)))
    second = render(policy([ip_network("10.1.0.0/24")], ["l3f-u0"], None, pool, port_slice(1, 2)))
    assert "snat ip to 198.51.100.240-198.51.100.255:1024-33279" in first
    assert "snat ip to 198.51.100.240-198.51.100.255:33280-65535" in second
    assert "meta l4proto { tcp, udp, icmp }" in first


def test_the_pool_is_announced_upstream_and_drain_withdraws_it_and_the_default(
    tmp_path: Path,
) -> None:
    normal = desired(tmp_path)
    assert normal.bird is not None and POOL in normal.policy.public
    text = bird_render(normal.bird)
    assert POOL in text
    drained = desired(tmp_path, drain=True)
    assert drained.bird is not None
    upstream = [p for p in drained.bird.peers if p.role == "up"]
    fabric = [p for p in drained.bird.peers if p.role != "up"]
    assert upstream and all(p.export_policy.kind == "none" for p in upstream)
    # To the fabric: everything but the default route, so new flows leave by the other gateway.
    assert fabric and all(p.export_policy.filter_body(4).startswith("if net ~ [ 0.0.0.0/0{1,32}") for p in fabric)  # fmt: skip
    assert gateway_config(dataclasses.replace(normal.routing, drain=True)) == drained.bird


def test_a_pair_gateway_has_no_fallback_default_to_attract_traffic_it_would_drop(
    tmp_path: Path,
) -> None:
    pair = desired(tmp_path)
    assert pair.bird is not None and pair.routing is not None
    assert not [r for r in pair.bird.static_routes if r.prefix.prefixlen == 0]
    single = gateway_config(dataclasses.replace(pair.routing, pair=False))
    assert [r for r in single.static_routes if r.prefix.prefixlen == 0]


def test_a_sync_link_runs_conntrackd_with_the_external_cache_off(tmp_path: Path) -> None:
    none = desired(tmp_path)
    assert none.conntrackd is None and none.steer is None
    assert not set(CONNTRACK_SYSCTLS) & set(none.sysctls)
    synced = desired(tmp_path, sync=SYNC)
    assert synced.conntrackd is not None
    assert "DisableExternalCache on" in synced.conntrackd
    assert "IPv4_Destination_Address 172.18.0.1" in synced.conntrackd
    assert f"LockFile {tmp_path / 'conntrackd.lock'}" in synced.conntrackd
    assert synced.sysctls["net.netfilter.nf_conntrack_tcp_loose"] == "1"
    # Replies in the other gateway's ports (TCP, UDP, echo ids) go to it over the sync link,
    # when the kernel has a route to the pool through it (the peer is alive).
    assert synced.steer is not None
    assert "meta l4proto { tcp, udp } th dport 1024-65535 th dport != 33280-65535" in synced.steer
    assert "icmp id != 33280-65535" in synced.steer
    assert 'fib daddr . mark oif "l3f-s0" counter fwd ip to 172.18.0.1 device "l3f-s0"' in synced.steer  # fmt: skip
    ops = plan(synced, GatewayObserved(egress=EGRESS))
    assert SyncSet(conntrackd=synced.conntrackd, steer=synced.steer) in ops
    # Running as desired: nothing to do for the sync.
    settled = GatewayObserved(
        egress=EGRESS, conntrackd_text=synced.conntrackd, steer_digest=digest_of(synced.steer)
    )
    assert not [op for op in plan(synced, settled) if isinstance(op, SyncSet)]


def pair_view(peer: dict | None) -> HostState:
    """gw1 of a pair with a sync link, and its peer's registration (None: not registered)."""
    state = view(sync=SYNC)
    if peer is not None:
        state.gateways["gw2"] = {**PAIR, "snat_index": 0, **peer}
    return state


PEER_SYNC = {"interface": "l3f-s0", "local": "172.18.0.1", "peer": "172.18.0.0"}


@pytest.mark.parametrize(
    ("peer", "steered"),
    [
        ({"sync": PEER_SYNC}, True),
        ({"sync": PEER_SYNC, "drain": True}, False),  # drained: it may stop with nothing in flight
        ({"sync": {**PEER_SYNC, "local": "172.18.0.9"}}, False),  # not the peer of our link
        (None, False),
    ],
)
def test_replies_are_steered_only_to_a_registered_undrained_peer_checked_by_bfd(
    peer: dict | None, steered: bool
) -> None:
    config = gateway_config(routing_from_state(pair_view(peer), "gw1"))
    text = bird_render(config)
    if steered:
        assert config.peer_routes == (
            StaticRoute(ip_network(POOL), via=ip_address("172.18.0.1"), bfd=True),
        )
        assert f"route {POOL} via 172.18.0.1 bfd;" in text
        assert f"kernel table {ROUTE_TABLE};" in text and "protocol bfd {" in text
    else:
        assert config.peer_routes == () and "peer_routes4" not in text


@needs_bird
def test_the_steering_route_parses(tmp_path: Path) -> None:
    path = tmp_path / "gw.conf"
    config = gateway_config(routing_from_state(pair_view({"sync": PEER_SYNC}), "gw1"))
    path.write_text(bird_render(config))
    done = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_conntrackd_config_is_refused_for_a_bad_link() -> None:
    with pytest.raises(ValueError):
        SyncLink("bad name", ip_address("172.18.0.0"), ip_address("172.18.0.1"))
    with pytest.raises(ValueError):
        SyncLink("l3f-s0", ip_address("172.18.0.0"), ip_address("2001:db8::1"))
    assert "Mode FTFW" in conntrackd_conf(
        SyncLink("l3f-s0", ip_address("172.18.0.0"), ip_address("172.18.0.1")), Path("/x")
    )


@pytest.mark.parametrize(
    "body",
    [
        {"snat_index": 2, "snat_slices": 2},
        {"snat_pool": POOL, "snat_address": "192.0.2.1"},
        {"sync": {"interface": "l3f-s0", "local": "172.18.0.0", "peer": "2001:db8::1"}},
        {"sync": {"interface": "bad name!", "local": "172.18.0.0", "peer": "172.18.0.1"}},
    ],
)
def test_bad_pair_registrations_are_refused(body: dict) -> None:
    base = {"router_id": "172.17.0.2", "fabric_addresses": ["172.16.0.0"]}
    with pytest.raises(ValueError):
        GatewayRegistration.model_validate({**base, **body})


def test_the_drain_cli_posts_and_undrain_deletes(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path))
        return httpx.Response(200, json={"name": "gw2", "drain": request.method == "POST"})

    real = httpx.Client.__init__

    def client(self, *args, **kwargs) -> None:
        kwargs["transport"] = httpx.MockTransport(handler)
        real(self, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "__init__", client)
    assert cli.main(["gateway", "drain", "gw2", "--api", "http://ctl:9696", "-f", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["drain"] is True
    assert cli.main(["gateway", "undrain", "gw2", "--api", "http://ctl:9696"]) == 0
    assert seen == [("POST", "/v1/gateways/gw2/drain"), ("DELETE", "/v1/gateways/gw2/drain")]
