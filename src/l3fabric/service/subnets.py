"""Subnets: CIDR, gateway and allocation-pool semantics, and the network's
``subnets`` list kept in step in the same transaction.

Adding a subnet rewrites its network guarded by the network's mod_revision,
so two concurrent creates of overlapping subnets cannot both pass the
overlap check: the second one's write fails, it re-reads and sees the first.
Deleting one rewrites the network too, which fails every allocation that read
the network before; and it compares the network's allocation marker, which
fails the delete if an allocation committed after it looked (``ipam``).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from l3fabric.ipam import (
    Allocator,
    IPAddress,
    IPNetwork,
    allocation_guard,
    default_pools,
    parse_pools,
    pools_to_api,
)
from l3fabric.keys import ipam_key, ipam_prefix
from l3fabric.model.neutron import SubnetBody
from l3fabric.service.common import (
    JSON,
    WRITE_ATTEMPTS,
    Collection,
    Context,
    Resource,
    bumped,
    busy,
    standard_attrs,
    validate,
)
from l3fabric.service.errors import bad_request, conflict
from l3fabric.store import (
    Create,
    KeyNotFoundError,
    KeyValue,
    Op,
    RevisionMismatchError,
    Store,
    Update,
)


def usable(network: IPNetwork, address: IPAddress) -> bool:
    """Inside the subnet and neither its IPv4 network nor broadcast address."""
    if address not in network:
        return False
    if network.version == 4 and network.prefixlen < 31:
        return address not in (network.network_address, network.broadcast_address)
    return True


class Subnets(Resource):
    collection = "subnets"
    singular = "subnet"
    plural = "subnets"
    not_found_type = "SubnetNotFound"
    label = "Subnet"
    model = SubnetBody

    def __init__(self, store: Store, ipam: Allocator, *, networks: Collection) -> None:
        super().__init__(store)
        self.ipam = ipam
        self.networks = networks

    def create(self, data: Any, ctx: Context) -> JSON:
        body = validate(SubnetBody, data, create=True)
        sent = body.model_fields_set
        network = ipaddress.ip_network(body.cidr)
        if "ip_version" in sent and body.ip_version != network.version:
            raise bad_request(
                f"Invalid input: cidr {body.cidr} is IPv{network.version}"
                f" but ip_version is {body.ip_version}"
            )
        if network.version == 4 and (body.ipv6_ra_mode or body.ipv6_address_mode):
            raise bad_request("ipv6_ra_mode and ipv6_address_mode are for IPv6 subnets only")
        if "gateway_ip" in sent:
            gateway = _gateway(network, body.gateway_ip)
        else:
            gateway = network.network_address + 1 if network.num_addresses > 1 else None
        value = {
            **standard_attrs(body.api_attrs(), ctx),
            "name": body.name,
            "description": body.description,
            "network_id": body.network_id,
            "cidr": body.cidr,
            "ip_version": network.version,
            "gateway_ip": str(gateway) if gateway is not None else None,
            "allocation_pools": [],
            "enable_dhcp": body.enable_dhcp,
            "dns_nameservers": body.dns_nameservers,
            "host_routes": [r.model_dump() for r in body.host_routes],
            "ipv6_ra_mode": body.ipv6_ra_mode,
            "ipv6_address_mode": body.ipv6_address_mode,
            "subnetpool_id": None,
        }
        value["allocation_pools"] = self._pools(
            network,
            gateway,
            [p.model_dump() for p in body.allocation_pools],
            "allocation_pools" in sent,
        )
        _check_families(network, value)
        for _ in range(WRITE_ATTEMPTS):
            net_kv = self.networks.read(body.network_id)
            for other_id in net_kv.value["subnets"]:
                other_kv = self.store.get(self.key(other_id))
                if other_kv and network.overlaps(ipaddress.ip_network(other_kv.value["cidr"])):
                    raise bad_request(
                        f"Invalid input for operation: Requested subnet with cidr: {body.cidr}"
                        f" for network: {body.network_id} overlaps with subnet"
                        f" {other_id} ({other_kv.value['cidr']})."
                    )
            network_value = bumped(
                net_kv.value, {"subnets": [*net_kv.value["subnets"], value["id"]]}
            )
            try:
                self.store.txn(
                    [
                        Create(self.key(value["id"]), value),
                        Update(net_kv.key, network_value, net_kv.mod_revision),
                    ]
                )
            except (RevisionMismatchError, KeyNotFoundError):
                continue  # the network changed or went: read it again
            return value
        raise busy("Network", body.network_id)

    @staticmethod
    def _pools(
        network: IPNetwork, gateway: IPAddress | None, pools: list[dict[str, str]], given: bool
    ) -> list[dict[str, str]]:
        if not given:
            return pools_to_api(default_pools(network, gateway), network.version)
        try:
            parsed = parse_pools(network, pools)
        except ValueError as exc:
            raise bad_request(f"Invalid input for allocation_pools. Reason: {exc}.") from None
        if gateway is not None and any(a <= int(gateway) <= b for a, b in parsed):
            raise conflict(
                "GatewayConflictWithAllocationPools",
                f"Gateway ip {gateway} conflicts with allocation pool(s)",
            )
        return pools_to_api(parsed, network.version)

    def changes(self, old: JSON, attrs: JSON) -> JSON:
        network = ipaddress.ip_network(old["cidr"])
        changes = dict(attrs)
        if "host_routes" in attrs:
            changes["host_routes"] = [dict(r) for r in attrs["host_routes"]]
        gateway_text = attrs.get("gateway_ip", old["gateway_ip"])
        gateway = _gateway(network, gateway_text) if gateway_text is not None else None
        if "gateway_ip" in attrs and gateway is not None and gateway_text != old["gateway_ip"]:
            holder = self.store.get(ipam_key(old["id"], str(gateway)))
            if holder is not None:
                raise conflict(
                    "GatewayIpInUse",
                    f"Gateway ip {gateway} is in use by port {holder.value['port_id']}",
                )
        if "allocation_pools" in attrs or "gateway_ip" in attrs:
            pools = attrs.get("allocation_pools", old["allocation_pools"])
            changes["allocation_pools"] = self._pools(network, gateway, list(pools), True)
        _check_families(network, {**old, **changes})
        return changes

    def ensure_unused(self, subnet_id: str) -> None:
        kvs, _ = self.store.range(ipam_prefix(subnet_id))
        if kvs:
            raise conflict(
                "SubnetInUse",
                f"Unable to complete operation on subnet {subnet_id}: One or more ports"
                " have an IP allocation from this subnet.",
            )

    def delete(self, object_id: str, ctx: Context, if_match: int | None = None) -> None:
        def plan(kv: KeyValue) -> list[Op]:
            network_id = kv.value["network_id"]
            # Read before looking for allocations: one made after this fails the txn.
            guard = allocation_guard(self.store, network_id)
            self.ensure_unused(object_id)
            net_kv = self.networks.read(network_id)
            remaining = [s for s in net_kv.value["subnets"] if s != object_id]
            # Rewriting the network fails every allocation that read it before.
            network = bumped(net_kv.value, {"subnets": remaining})
            return [guard, Update(net_kv.key, network, net_kv.mod_revision)]

        self.remove(object_id, if_match, plan)
        self.ipam.forget(object_id)


def _gateway(network: IPNetwork, text: str | None) -> IPAddress | None:
    if text is None:
        return None
    gateway = ipaddress.ip_address(text)
    if not usable(network, gateway):
        raise bad_request(
            f"Invalid input for gateway_ip. Reason: gateway {gateway} is not a usable"
            f" address of subnet {network}."
        )
    return gateway


def _check_families(network: IPNetwork, subnet: JSON) -> None:
    """Name servers may be of either family; routes must match the subnet's."""
    for route in subnet["host_routes"]:
        for field in ("destination", "nexthop"):
            if ipaddress.ip_network(route[field], strict=False).version != network.version:
                raise bad_request(
                    f"Invalid input for host_routes. Reason: {field} {route[field]} is not"
                    f" IPv{network.version} like the subnet {network}."
                )
