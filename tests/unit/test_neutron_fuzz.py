"""No request body produces a 500: seeded random bodies for every resource,
built from real attribute names and a mix of good, bad and hostile values."""

from __future__ import annotations

import random
import warnings

from l3fabric.api.app import create_app
from l3fabric.store.sqlite import SqliteStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ENVELOPES = {
    "networks": "network",
    "subnets": "subnet",
    "ports": "port",
    "security-groups": "security_group",
    "security-group-rules": "security_group_rule",
    "routers": "router",
    "floatingips": "floatingip",
}
ATTRIBUTES = [
    "name", "description", "network_id", "cidr", "ip_version", "gateway_ip",
    "allocation_pools", "fixed_ips", "mac_address", "allowed_address_pairs",
    "security_groups", "binding:host_id", "binding:profile", "router:external", "shared",
    "mtu", "admin_state_up", "provider:segmentation_id", "provider:network_type",
    "security_group_id", "direction", "ethertype", "protocol", "port_range_min",
    "port_range_max", "remote_ip_prefix", "remote_group_id", "external_gateway_info",
    "host_routes", "dns_nameservers", "device_owner", "device_id", "project_id",
    "enable_dhcp", "ipv6_ra_mode", "status", "id", "floating_network_id",
    "floating_ip_address", "port_id", "fixed_ip_address", "subnet_id",
]  # fmt: skip


def test_random_bodies_never_cause_a_500(tmp_path) -> None:
    store = SqliteStore(tmp_path / "db")
    client = TestClient(create_app(store), raise_server_exceptions=False)
    net = client.post("/v2.0/networks", json={"network": {}}).json()["network"]
    sub = client.post(
        "/v2.0/subnets", json={"subnet": {"network_id": net["id"], "cidr": "10.0.0.0/24"}}
    ).json()["subnet"]
    port = client.post("/v2.0/ports", json={"port": {"network_id": net["id"]}}).json()["port"]
    router = client.post("/v2.0/routers", json={"router": {}}).json()["router"]
    group = client.get("/v2.0/security-groups").json()["security_groups"][0]
    public = client.post("/v2.0/networks", json={"network": {"router:external": True}}).json()[
        "network"
    ]
    client.post(
        "/v2.0/subnets", json={"subnet": {"network_id": public["id"], "cidr": "203.0.113.0/24"}}
    )
    fip = client.post(
        "/v2.0/floatingips", json={"floatingip": {"floating_network_id": public["id"]}}
    ).json()["floatingip"]
    ids = {
        "networks": net["id"],
        "subnets": sub["id"],
        "ports": port["id"],
        "security-groups": group["id"],
        "security-group-rules": group["security_group_rules"][0]["id"],
        "routers": router["id"],
        "floatingips": fip["id"],
    }
    values = [
        None, True, False, 0, -1, 65536, 2**70, 1.5, "", "x", "\u0000", "é" * 300,
        "10.0.0.5", "10.0.0.0/24", "2001:db8::/64", "2001:db8::5", "0.0.0.0/0",
        "fa:16:3e:00:00:01", [], {}, [{}], [None], [{"ip_address": "10.0.0.9"}],
        [{"subnet_id": sub["id"]}], [{"start": "10.0.0.5", "end": "10.0.0.9"}],
        [{"destination": "10.1.0.0/16", "nexthop": "10.0.0.3"}], {"network_id": net["id"]},
        "tcp", "icmp", "ingress", "IPv6", [group["id"]], "203.0.113.9", "10.0.0.2",
        public["id"], *ids.values(),
    ]  # fmt: skip
    rnd = random.Random(20261127)
    failures = []
    for _ in range(800):
        collection = rnd.choice(list(ENVELOPES))
        body = {rnd.choice(ATTRIBUTES): rnd.choice(values) for _ in range(rnd.randint(0, 5))}
        if collection in ("subnets", "ports") and rnd.random() < 0.7:
            body["network_id"] = net["id"]
        if collection == "subnets" and rnd.random() < 0.5:
            body["cidr"] = f"10.0.{rnd.randint(0, 300)}.0/{rnd.choice([24, 30, 31, 32])}"
        if collection == "floatingips" and rnd.random() < 0.7:
            body["floating_network_id"] = rnd.choice([public["id"], net["id"]])
        if collection == "security-group-rules" and rnd.random() < 0.7:
            body.update(security_group_id=group["id"], direction="ingress")
        roll = rnd.random()
        if roll < 0.6:
            response = client.post(f"/v2.0/{collection}", json={ENVELOPES[collection]: body})
        elif roll < 0.9:
            response = client.put(
                f"/v2.0/{collection}/{ids[collection]}", json={ENVELOPES[collection]: body}
            )
        else:
            action = rnd.choice(["add_router_interface", "remove_router_interface"])
            response = client.put(f"/v2.0/routers/{router['id']}/{action}", json=body)
        if response.status_code >= 500:
            failures.append((collection, body, response.text))
    store.close()
    assert failures == []
