"""Routers: accepted and stored so that OpenStack tooling works, but they
change nothing in the fabric.

Every address is already a routed /32 (/128); networks reach each other
through the fabric, and the edge gateway gives external connectivity
(public networks announced, private ones source-NATed). A router interface
is kept as a port holding the subnet's gateway address, as in Neutron, so
the address is reserved and the subnet shows as in use.
"""

from __future__ import annotations

from typing import Any

from l3fabric.model.neutron import RouterBody, RouterInterfaceBody
from l3fabric.service.common import JSON, Context, standard_attrs, validate
from l3fabric.service.errors import bad_request, conflict, not_found
from l3fabric.service.ports import PortOwner
from l3fabric.store import Create, KeyValue, Op

ROUTER_INTERFACE = "network:router_interface"


class Routers(PortOwner):
    collection = "routers"
    singular = "router"
    plural = "routers"
    not_found_type = "RouterNotFound"
    label = "Router"
    model = RouterBody

    def create(self, data: Any, ctx: Context) -> JSON:
        body = validate(RouterBody, data, create=True)
        value = {
            **standard_attrs(body.api_attrs(), ctx),
            "name": body.name,
            "description": body.description,
            "admin_state_up": body.admin_state_up,
            "status": "ACTIVE",
            "external_gateway_info": self._gateway_info(
                body.api_attrs().get("external_gateway_info")
            ),
        }
        self.store.txn([Create(self.key(value["id"]), value)])
        return value

    def changes(self, old: JSON, attrs: JSON) -> JSON:
        if "external_gateway_info" in attrs:
            attrs = {
                **attrs,
                "external_gateway_info": self._gateway_info(attrs["external_gateway_info"]),
            }
        return attrs

    def _gateway_info(self, info: JSON | None) -> JSON | None:
        if not info:
            return None
        network = self.networks.get(info["network_id"], Context())
        if not network["router:external"]:
            raise bad_request(
                f"Bad router request: Network {network['id']} is not an external network."
            )
        return {
            "network_id": network["id"],
            "enable_snat": info.get("enable_snat", True),
            # No address is taken on the external network: the router forwards nothing.
            "external_fixed_ips": [],
        }

    def interfaces(self, router_id: str) -> list[JSON]:
        return self.ports.list(
            Context(), {"device_id": [router_id], "device_owner": [ROUTER_INTERFACE]}
        )

    def delete(self, object_id: str, ctx: Context, if_match: int | None = None) -> None:
        def plan(kv: KeyValue) -> list[Op]:
            if self.interfaces(object_id):
                raise conflict(
                    "RouterInUse",
                    f"Router {object_id} still has ports; remove its interfaces first.",
                )
            return []

        self.remove(object_id, if_match, plan)

    def add_interface(self, router_id: str, data: Any, ctx: Context) -> JSON:
        body = _interface_body(data)
        router = self.get(router_id, ctx)
        ports = self.ports
        if body.port_id is not None:
            port = ports.get(body.port_id, ctx)
            if port["device_owner"] or port["device_id"]:
                raise conflict("PortInUse", f"Port {port['id']} is already in use.")
            port = ports.update(
                port["id"], {"device_owner": ROUTER_INTERFACE, "device_id": router_id}, ctx, None
            )
        else:
            subnet = self.subnets.get(str(body.subnet_id), ctx)
            if subnet["gateway_ip"] is None:
                raise bad_request(f"Subnet {subnet['id']} has no gateway_ip to give the router.")
            port = ports.create(
                {
                    "network_id": subnet["network_id"],
                    "fixed_ips": [{"subnet_id": subnet["id"], "ip_address": subnet["gateway_ip"]}],
                    "device_owner": ROUTER_INTERFACE,
                    "device_id": router_id,
                    "project_id": router["project_id"],
                },
                ctx,
            )
        return _interface_info(router, port)

    def remove_interface(self, router_id: str, data: Any, ctx: Context) -> JSON:
        body = _interface_body(data)
        router = self.get(router_id, ctx)
        for port in self.interfaces(router_id):
            subnets = {f["subnet_id"] for f in port["fixed_ips"]}
            if port["id"] == body.port_id or body.subnet_id in subnets:
                self.ports.delete(port["id"], ctx)
                return _interface_info(router, port)
        raise not_found(
            "RouterInterfaceNotFound",
            f"Router {router_id} has no interface on {body.port_id or body.subnet_id}.",
        )


def _interface_body(data: Any) -> RouterInterfaceBody:
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object with subnet_id or port_id")
    try:
        body = RouterInterfaceBody.model_validate(data)
    except ValueError as exc:
        raise bad_request(f"Invalid router interface request: {exc}") from None
    if (body.subnet_id is None) == (body.port_id is None):
        raise bad_request("Bad router request: give exactly one of subnet_id and port_id.")
    return body


def _interface_info(router: JSON, port: JSON) -> JSON:
    subnet_ids = [f["subnet_id"] for f in port["fixed_ips"]]
    return {
        "id": router["id"],
        "tenant_id": router["project_id"],
        "project_id": router["project_id"],
        "port_id": port["id"],
        "network_id": port["network_id"],
        "subnet_id": subnet_ids[0] if subnet_ids else None,
        "subnet_ids": subnet_ids,
    }
