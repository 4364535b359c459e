"""Floating IPs: accepted and stored so that OpenStack tooling works, but
nothing programs them: a floating IP forwards no traffic (status ``DOWN``).

In this fabric a VM gets a public address by having a port on a
``router:external`` network; there is no NAT box to translate a floating IP
to a fixed one. Floating IPs exist so that tooling that creates them keeps
working, and a later version may give them a pure-L3 meaning (a /32 of the
public address routed to the VM's host, the address on the VM's loopback).

As in Neutron, the address is held by a port on the external network with
``device_owner`` ``network:floatingip`` and ``device_id`` the floating IP's
id. So allocation is the ports' race-free IPAM (one key per address,
create-if-absent), deleting the floating IP releases the address, and an
external network or subnet that still holds floating IPs cannot be deleted
(409 ``NetworkInUse`` / ``SubnetInUse``, Neutron's refusal).
"""

from __future__ import annotations

import contextlib
import ipaddress
from typing import Any

from l3fabric.model.neutron import FloatingIpBody
from l3fabric.service.common import (
    JSON,
    Context,
    validate,
)
from l3fabric.service.errors import (
    BadRequest,
    Conflict,
    NotFound,
    bad_request,
    conflict,
    not_allowed,
)
from l3fabric.service.ports import FLOATINGIP_OWNER, PortOwner
from l3fabric.store import Create, Op


def _bad(message: str) -> BadRequest:
    # Neutron's BadRequest(resource="floatingip") wording, which clients print.
    return bad_request(f"Bad floatingip request: {message}")


def _is_v4(address: str) -> bool:
    return ipaddress.ip_address(address).version == 4


class FloatingIps(PortOwner):
    collection = "floatingips"
    singular = "floatingip"
    plural = "floatingips"
    not_found_type = "FloatingIPNotFound"
    label = "Floating IP"
    model = FloatingIpBody

    # Create -------------------------------------------------------------------

    def create(self, data: Any, ctx: Context) -> JSON:
        body = validate(FloatingIpBody, data, create=True)
        network = self.networks.get(body.floating_network_id, ctx)
        if not network["router:external"]:
            raise _bad(f"Network {network['id']} is not a valid external network.")
        attrs = self.new_attrs(body.api_attrs(), ctx)
        if body.fixed_ip_address is not None and body.port_id is None:
            raise _bad("fixed_ip_address needs a port_id.")
        if body.floating_ip_address is not None and not ctx.is_admin:
            raise not_allowed("create_floatingip:floating_ip_address")
        association = self._association(
            attrs["id"],
            network["id"],
            attrs["project_id"],
            body.port_id,
            body.fixed_ip_address,
            ctx,
        )
        port = self._allocate(network, body, attrs, ctx)
        value = {
            **attrs,
            "floating_ip_address": port["fixed_ips"][0]["ip_address"],
            "floating_network_id": network["id"],
            # Nothing routes or translates here, so no router is involved.
            "router_id": None,
            **association,
            "status": "DOWN",
            "description": body.description,
        }
        try:
            self.store.txn([Create(self.key(value["id"]), value)])
        except BaseException:
            self.ports.delete(port["id"], Context(), owned=True)
            raise
        return value

    def _allocate(self, network: JSON, body: FloatingIpBody, attrs: JSON, ctx: Context) -> JSON:
        """The ``network:floatingip`` port that holds the address, made by the
        ports' IPAM; floating IPs are IPv4 only, as in Neutron."""
        fixed: dict[str, str] = {}
        if body.floating_ip_address is not None:
            if not _is_v4(body.floating_ip_address):
                raise _bad(f"floating IP address {body.floating_ip_address} is not IPv4.")
            fixed["ip_address"] = body.floating_ip_address
        if body.subnet_id is not None:
            subnet = self.subnets.get(body.subnet_id, ctx)
            if subnet["network_id"] != network["id"]:
                raise _bad(f"Subnet {subnet['id']} is not on network {network['id']}.")
            if subnet["ip_version"] != 4:
                raise _bad(f"Subnet {subnet['id']} is not an IPv4 subnet.")
            fixed["subnet_id"] = subnet["id"]
        if fixed:
            return self._port(network, [fixed], attrs, ctx)
        # In the network's own order (the order they were created), not the
        # store's key order, which is the random order of their ids.
        by_id = {s["id"]: s for s in self.subnets.list(ctx, {"network_id": [network["id"]]})}
        candidates = [
            sid for sid in network.get("subnets", []) if by_id.get(sid, {}).get("ip_version") == 4
        ]
        if not candidates:
            raise _bad(f"Network {network['id']} does not contain any IPv4 subnet.")
        # The ports' IPAM tries one subnet per request; a full one is skipped.
        failure: Conflict | None = None
        for subnet_id in candidates:
            try:
                return self._port(network, [{"subnet_id": subnet_id}], attrs, ctx)
            except Conflict as exc:
                if exc.type != "IpAddressGenerationFailure":
                    raise
                failure = exc
        assert failure is not None
        raise failure

    def _port(self, network: JSON, fixed_ips: list[JSON], attrs: JSON, ctx: Context) -> JSON:
        return self.ports.create(
            {
                "network_id": network["id"],
                "fixed_ips": fixed_ips,
                "device_owner": FLOATINGIP_OWNER,
                "device_id": attrs["id"],
                "project_id": attrs["project_id"],
                "security_groups": [],
            },
            # Neutron makes the address's port itself, not as the caller.
            Context(),
        )

    # Association --------------------------------------------------------------

    def _association(
        self,
        floatingip_id: str,
        network_id: str,
        project_id: str,
        port_id: str | None,
        fixed_ip: str | None,
        ctx: Context,
    ) -> JSON:
        """``port_id`` and ``fixed_ip_address`` after checking them as Neutron
        does: the port exists, is the floating IP's project's, the fixed IP is
        one of its IPv4 addresses and has no other floating IP on this network."""
        if port_id is None:
            return {"port_id": None, "fixed_ip_address": None}
        port = self.ports.get(port_id, ctx)  # another project's port: 404
        if port["device_owner"] == FLOATINGIP_OWNER:
            raise _bad(f"Port {port_id} holds a floating IP itself and cannot be given one.")
        if port["project_id"] != project_id:
            raise _bad(
                f"Cannot create floating IP and bind it to Port {port_id}, since that port"
                " is owned by a different tenant."
            )
        v4 = [f["ip_address"] for f in port["fixed_ips"] if _is_v4(f["ip_address"])]
        if fixed_ip is None:
            if not v4:
                raise _bad(f"Port {port_id} has no fixed IPv4 address to give a floating IP.")
            if len(v4) > 1:
                raise _bad(
                    f"Port {port_id} has multiple fixed IPv4 addresses. Must provide a"
                    " specific IPv4 address when assigning a floating IP."
                )
            fixed_ip = v4[0]
        elif fixed_ip not in v4:
            raise _bad(f"Port {port_id} does not have fixed ip {fixed_ip}.")
        taken = self.list(
            Context(),
            {
                "port_id": [port_id],
                "fixed_ip_address": [fixed_ip],
                "floating_network_id": [network_id],
            },
        )
        if any(other["id"] != floatingip_id for other in taken):
            raise conflict(
                "FloatingIPPortAlreadyAssociated",
                f"Cannot associate floating IP {floatingip_id} with port {port_id} using"
                f" fixed IP {fixed_ip}, as that fixed IP already has a floating IP on"
                f" external network {network_id}.",
            )
        return {"port_id": port_id, "fixed_ip_address": fixed_ip}

    # Update and delete ----------------------------------------------------------

    def update(self, object_id: str, data: Any, ctx: Context, if_match: int | None) -> JSON:
        self.authorize(object_id, ctx, "update_floatingip")
        body = validate(FloatingIpBody, data, create=False)
        sent = body.model_fields_set

        def plan(old: JSON) -> tuple[JSON, list[Op]]:
            changes: JSON = {}
            if "description" in sent:
                changes["description"] = body.description
            if "port_id" in sent or "fixed_ip_address" in sent:
                port_id = body.port_id if "port_id" in sent else old["port_id"]
                if body.fixed_ip_address is not None and port_id is None:
                    raise _bad("fixed_ip_address needs a port_id.")
                changes.update(
                    self._association(
                        old["id"],
                        old["floating_network_id"],
                        old["project_id"],
                        port_id,
                        body.fixed_ip_address,
                        ctx,
                    )
                )
            return changes, []

        return self.modify(object_id, plan, if_match)

    def holder(self, floatingip_id: str) -> JSON | None:
        """The ``network:floatingip`` port holding the floating IP's address."""
        ports = self.ports.list(
            Context(), {"device_id": [floatingip_id], "device_owner": [FLOATINGIP_OWNER]}
        )
        return ports[0] if ports else None

    def delete(self, object_id: str, ctx: Context, if_match: int | None = None) -> None:
        self.authorize(object_id, ctx, f"delete_{self.singular}")
        self.remove(object_id, if_match)
        # The record goes first: a failure after it leaves an orphaned port
        # (visible, deletable), never a floating IP whose address is free.
        port = self.holder(object_id)
        if port is not None:
            with contextlib.suppress(NotFound):  # gone meanwhile: nothing to release
                self.ports.delete(port["id"], Context(), owned=True)

    def disassociate_port(self, port_id: str) -> None:
        """Clear every floating IP associated with ``port_id`` (its port is
        being deleted), as Neutron does on port delete."""
        for fip in self.list(Context(), {"port_id": [port_id]}):
            with contextlib.suppress(NotFound):  # gone meanwhile: nothing to clear
                self.update(fip["id"], {"port_id": None}, Context(), None)
