"""Ports: fixed IPs through IPAM, MAC addresses, allowed address pairs,
security groups and host binding.

A port and its address claims are written in one transaction: the claims
are Creates of ``ipam_key(subnet, address)``, so a taken address fails the
whole transaction. For an address the client asked for that is a 409
IpAddressAlreadyAllocated; for one IPAM picked, the allocator is told and
picks again. Releases (port delete, fixed_ips update) are Deletes in the
same transaction as the port write. Every claiming transaction also carries
the network's ``claim_guard``, so it and a subnet or network delete never
both commit. Updates, including the status agents report (``set_statuses``),
go through the one write path, ``revise``.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from l3fabric import event_trace
from l3fabric.ipam import Allocator, claim_guard
from l3fabric.keys import ipam_key, neutron_key, port_bindings_prefix
from l3fabric.model.neutron import PortBody
from l3fabric.service import policy
from l3fabric.service.common import (
    JSON,
    WRITE_ATTEMPTS,
    Collection,
    Contended,
    Context,
    Resource,
    busy,
    revise,
    standard_attrs,
    validate,
)
from l3fabric.service.errors import Conflict, bad_request, conflict
from l3fabric.service.security_groups import SecurityGroups
from l3fabric.service.subnets import usable
from l3fabric.store import (
    Create,
    Delete,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    Op,
    RevisionMismatchError,
    Store,
)

# Each lost claim means someone else won an address, so this bounds a loop
# that ends long before on any real pool.
CLAIM_ATTEMPTS = 4 * WRITE_ATTEMPTS

# The device_owner of the port that holds a floating IP's address; only its
# floating IP deletes it.
FLOATINGIP_OWNER = "network:floatingip"

# What a member may send on create without it counting as setting an admin-only attribute.
_DEFAULTS = policy.defaults_of(PortBody)

# Neutron's default base_mac: fa:16:3e plus three random octets.
MAC_PREFIX = "fa:16:3e"


@dataclass
class _Request:
    """One wanted address: on one of ``subnets`` (tried in order), at
    ``address`` if the client named one."""

    subnets: list[JSON]
    address: str | None = None


@dataclass(frozen=True)
class _Claim:
    subnet_id: str
    address: str
    explicit: bool


class Ports(Resource):
    collection = "ports"
    singular = "port"
    plural = "ports"
    not_found_type = "PortNotFound"
    label = "Port"
    model = PortBody

    def __init__(
        self,
        store: Store,
        ipam: Allocator,
        *,
        networks: Collection,
        subnets: Collection,
        security_groups: SecurityGroups,
        may_delete: Callable[[str], None] = lambda port_id: None,
    ) -> None:
        """``may_delete(port_id)`` raises when something else still needs the
        port (anycast membership); ``deleted`` hooks hear of each deleted port
        (floating IPs let go of it): both belong to services built on ports."""
        super().__init__(store)
        self.ipam = ipam
        self.networks = networks
        self.subnets = subnets
        self.security_groups = security_groups
        self.may_delete = may_delete
        self.deleted: list[Callable[[str], None]] = []
        # Told of each deleted port with its last value (Nova's network-vif-deleted).
        self.removed: list[Callable[[JSON], None]] = []

    # Create -------------------------------------------------------------------

    def create(self, data: Any, ctx: Context) -> JSON:
        body = validate(PortBody, data, create=True)
        sent = body.model_fields_set
        policy.check_admin_only(ctx, "create_port", body.api_attrs(), _DEFAULTS)
        net_kv = self.networks.read(body.network_id)
        policy.check_network_use(
            ctx,
            net_kv.value,
            "create_port",
            self.networks.missing(body.network_id),
            shared_ok=True,
        )
        policy.check_network_owner(ctx, net_kv.value, "create_port", body.api_attrs())
        value = {
            # A floating IP's address port is the floating IP's, not the project's (quota).
            **(standard_attrs if body.device_owner == FLOATINGIP_OWNER else self.new_attrs)(
                body.api_attrs(), ctx
            ),
            "name": body.name,
            "description": body.description,
            "network_id": body.network_id,
            "admin_state_up": body.admin_state_up,
            "mac_address": body.mac_address or _random_mac(),
            "fixed_ips": [],
            "device_id": body.device_id,
            "device_owner": body.device_owner,
            "status": "DOWN",
            "security_groups": [],
            "allowed_address_pairs": [],
            "binding:host_id": body.binding_host_id,
            "binding:profile": body.binding_profile,
            "binding:vnic_type": body.binding_vnic_type,
            "binding:vif_type": _vif_type(body.binding_host_id),
            "binding:vif_details": vif_details(body.binding_host_id),
        }
        if "mac_address" in sent:
            self._check_mac_free(body.network_id, value["mac_address"], None)
        # Not given: the network's value (Neutron's port-security extension).
        secured = (
            body.port_security_enabled
            if "port_security_enabled" in sent
            else net_kv.value.get("port_security_enabled", True)
        )
        value["port_security_enabled"] = secured
        _check_port_security(
            secured,
            body.allowed_address_pairs,
            body.security_groups if "security_groups" in sent else None,
            [],
        )
        if "security_groups" in sent:
            value["security_groups"] = self._check_groups(
                body.security_groups, value["project_id"], ctx
            )
        elif secured and not body.device_owner.startswith("network:"):
            # Neutron trusts the network's own ports (router interfaces, floating
            # IPs): they get no default group, so their addresses are in no group.
            value["security_groups"] = [self.security_groups.ensure_default(value["project_id"])]
        key = self.key(value["id"])
        for _ in range(CLAIM_ATTEMPTS):
            network = net_kv.value
            subnets = self._subnets(network)
            value["allowed_address_pairs"] = _pairs(
                [p.model_dump() for p in body.allowed_address_pairs], subnets, value["mac_address"]
            )
            if "fixed_ips" in sent:
                fixed_ips = [f.model_dump() for f in body.fixed_ips]
                requests = self._requests(network, subnets, fixed_ips)
            else:
                requests = _automatic(subnets)
            self._gateway_rule(requests, value["device_owner"])
            claims = self._pick(network, requests, [])
            value["fixed_ips"] = [_fixed(c) for c in claims]
            ops = [*claim_guard(net_kv), *self._claim_ops(value["id"], claims), Create(key, value)]
            try:
                self.store.txn(ops)
            except KeyExistsError as exc:
                self._taken(exc, claims)
                continue
            except (RevisionMismatchError, KeyNotFoundError):
                # The network changed (a subnet came or went): plan again on it as it is now.
                net_kv = self.networks.read(body.network_id)
                continue
            self._claimed(claims)
            event_trace.mark("commit", value["id"])
            return self.view(value, ctx)
        raise _contention(net_kv.value)

    # Update -------------------------------------------------------------------

    def update(self, object_id: str, data: Any, ctx: Context, if_match: int | None) -> JSON:
        port = self.authorize(object_id, ctx, "update_port")
        body = validate(PortBody, data, create=False)
        sent = body.model_fields_set
        attrs = body.api_attrs()
        policy.check_admin_only(ctx, "update_port", attrs)
        network = self.networks.read(port["network_id"]).value
        policy.check_network_owner(ctx, network, "update_port", attrs)
        if "security_groups" in sent:
            attrs["security_groups"] = self._check_groups(
                body.security_groups, port["project_id"], ctx
            )
        if "binding_host_id" in sent:
            attrs["binding:vif_type"] = _vif_type(body.binding_host_id)
            attrs["binding:vif_details"] = vif_details(body.binding_host_id)
        # What the plan that got written claimed and released.
        claims: list[_Claim] = []
        released: list[JSON] = []

        def plan(old: JSON) -> tuple[JSON, list[Op]]:
            net_kv = self.networks.read(old["network_id"])
            network = net_kv.value
            subnets = self._subnets(network)
            changes = dict(attrs)
            mac = changes.get("mac_address", old["mac_address"])
            if mac != old["mac_address"]:
                if old["binding:host_id"]:
                    raise conflict(
                        "PortBound",
                        f"Unable to change the MAC address of port {object_id}: it is bound"
                        f" to host {old['binding:host_id']}.",
                    )
                self._check_mac_free(network["id"], mac, object_id)
            if "allowed_address_pairs" in sent:
                changes["allowed_address_pairs"] = _pairs(
                    [p.model_dump() for p in body.allowed_address_pairs], subnets, mac
                )
            _check_port_security(
                changes.get("port_security_enabled", old.get("port_security_enabled", True)),
                changes.get("allowed_address_pairs", old["allowed_address_pairs"]),
                changes.get("security_groups"),
                old["security_groups"],
            )
            claims[:] = []
            released[:] = []
            if "fixed_ips" in sent:
                requests = self._requests(
                    network, subnets, [f.model_dump() for f in body.fixed_ips]
                )
                self._gateway_rule(requests, changes.get("device_owner", old["device_owner"]))
                kept, requests = _keep_existing(old["fixed_ips"], requests)
                claims[:] = self._pick(network, requests, kept)
                changes["fixed_ips"] = [*kept, *(_fixed(c) for c in claims)]
                released[:] = [f for f in old["fixed_ips"] if f not in changes["fixed_ips"]]
            ops: list[Op] = [*claim_guard(net_kv)] if claims else []
            ops += self._claim_ops(object_id, claims)
            ops += [Delete(ipam_key(f["subnet_id"], f["ip_address"])) for f in released]
            return changes, ops

        new = self.modify(
            object_id,
            plan,
            if_match,
            attempts=CLAIM_ATTEMPTS,
            on_taken=lambda exc: self._taken(exc, claims),
        )
        self._claimed(claims)
        for f in released:
            self.ipam.released(f["subnet_id"], f["ip_address"])
        return self.view(new, ctx)

    # Delete -------------------------------------------------------------------

    def delete(
        self, object_id: str, ctx: Context, if_match: int | None = None, owned: bool = False
    ) -> None:
        """Delete a port and release its addresses.

        A floating IP's port is deleted only by its floating IP (``owned``),
        as in Neutron; deleting a port clears the floating IPs bound to it.
        """
        self.authorize(object_id, ctx, "delete_port")

        def plan(kv: KeyValue) -> list[Op]:
            if kv.value.get("device_owner") == FLOATINGIP_OWNER and not owned:
                raise conflict(
                    "PortInUse",
                    f"Port {object_id} cannot be deleted directly via the port API:"
                    f" has device owner {FLOATINGIP_OWNER}.",
                )
            self.may_delete(object_id)
            ops: list[Op] = []
            for f in kv.value["fixed_ips"]:
                claim = self.store.get(ipam_key(f["subnet_id"], f["ip_address"]))
                if claim is not None and claim.value.get("port_id") == object_id:
                    ops.append(Delete(claim.key, claim.mod_revision))
            # Its inactive bindings (binding-extended) go with it.
            bindings, _ = self.store.range(port_bindings_prefix(object_id))
            ops += [Delete(b.key, b.mod_revision) for b in bindings]
            return ops

        kv = self.remove(object_id, if_match, plan)
        for f in kv.value["fixed_ips"]:
            self.ipam.released(f["subnet_id"], f["ip_address"])
        for hook in self.deleted:
            hook(object_id)
        for removed in self.removed:
            removed(kv.value)

    # IPAM ---------------------------------------------------------------------

    def _taken(self, exc: KeyExistsError, claims: list[_Claim]) -> None:
        """A claim lost: a 409 for an address the client asked for, otherwise
        tell the allocator so the caller's next pick avoids it."""
        claim = next((c for c in claims if ipam_key(c.subnet_id, c.address) == exc.key), None)
        if claim is None:
            raise exc
        if claim.explicit:
            raise conflict(
                "IpAddressAlreadyAllocated",
                f"IP address {claim.address} already allocated in subnet {claim.subnet_id}",
            ) from None
        self.ipam.collided(claim.subnet_id, claim.address)

    def _claimed(self, claims: list[_Claim]) -> None:
        for c in claims:
            if c.explicit:
                self.ipam.claimed(c.subnet_id, c.address)

    def _pick(self, network: JSON, requests: list[_Request], kept: list[JSON]) -> list[_Claim]:
        claims: list[_Claim] = []
        chosen: dict[str, set[str]] = {}
        for f in kept:
            chosen.setdefault(f["subnet_id"], set()).add(f["ip_address"])
        for r in requests:
            if r.address is not None:
                claims.append(_Claim(r.subnets[0]["id"], r.address, True))
                chosen.setdefault(r.subnets[0]["id"], set()).add(r.address)
        for r in requests:
            if r.address is not None:
                continue
            for subnet in r.subnets:
                address = self.ipam.pick(subnet, chosen.get(subnet["id"], set()))
                if address is not None:
                    claims.append(_Claim(subnet["id"], address, False))
                    chosen.setdefault(subnet["id"], set()).add(address)
                    break
            else:
                raise conflict(
                    "IpAddressGenerationFailure",
                    f"No more IP addresses available on network {network['id']}.",
                )
        return claims

    def _claim_ops(self, port_id: str, claims: list[_Claim]) -> list[Op]:
        return [
            Create(
                ipam_key(c.subnet_id, c.address),
                {"port_id": port_id, "subnet_id": c.subnet_id, "ip_address": c.address},
            )
            for c in claims
        ]

    # Checks -------------------------------------------------------------------

    def _subnets(self, network: JSON) -> list[JSON]:
        subnets = []
        for subnet_id in network["subnets"]:
            kv = self.store.get(neutron_key("subnets", subnet_id))
            if kv is not None:
                subnets.append(kv.value)
        return subnets

    def _requests(
        self, network: JSON, subnets: list[JSON], fixed_ips: list[JSON]
    ) -> list[_Request]:
        by_id = {s["id"]: s for s in subnets}
        requests = []
        seen: set[str] = set()
        for f in fixed_ips:
            subnet_id, address = f.get("subnet_id"), f.get("ip_address")
            if subnet_id is None and address is None:
                raise bad_request(
                    "Invalid input for fixed_ips: each entry needs subnet_id or ip_address"
                )
            if subnet_id is not None and subnet_id not in by_id:
                self.subnets.read(subnet_id)  # 404 if it does not exist at all
                raise bad_request(
                    f"Invalid input for operation: Failed to create port on network"
                    f" {network['id']}, because fixed_ips included invalid subnet {subnet_id}."
                )
            if address is None:
                requests.append(_Request([by_id[subnet_id]]))
                continue
            if address in seen:
                raise bad_request(f"Invalid input for fixed_ips: {address} is given twice")
            seen.add(address)
            ip = ipaddress.ip_address(address)
            if subnet_id is not None:
                subnet = by_id[subnet_id]
                if not usable(ipaddress.ip_network(subnet["cidr"]), ip):
                    raise bad_request(
                        f"IP address {address} is not a valid IP for the specified subnet.",
                        "InvalidIpForSubnet",
                    )
            else:
                found = [s for s in subnets if usable(ipaddress.ip_network(s["cidr"]), ip)]
                if not found:
                    raise bad_request(
                        f"IP address {address} is not a valid IP for any of the subnets on"
                        " the specified network.",
                        "InvalidIpForNetwork",
                    )
                subnet = found[0]
            requests.append(_Request([subnet], address))
        return requests

    @staticmethod
    def _gateway_rule(requests: list[_Request], device_owner: str) -> None:
        """Only a router interface may hold a subnet's gateway address."""
        if device_owner.startswith("network:router"):
            return
        for r in requests:
            if r.address is not None and r.address == r.subnets[0]["gateway_ip"]:
                raise conflict(
                    "IpAddressAlreadyAllocated",
                    f"IP address {r.address} is the gateway of subnet {r.subnets[0]['id']}",
                )

    def _check_mac_free(self, network_id: str, mac: str, port_id: str | None) -> None:
        for port in self.list(Context(), {"network_id": [network_id]}):
            if port["mac_address"] == mac and port["id"] != port_id:
                raise conflict(
                    "MacAddressInUse",
                    f"Unable to complete operation for network {network_id}. The mac address"
                    f" {mac} is in use.",
                )

    def _check_groups(self, group_ids: list[str], project_id: str, ctx: Context) -> list[str]:
        """The port's groups: each must be one the caller sees and of the port's
        own project (another project's group is a 404, as in Neutron)."""
        for group_id in group_ids:
            group = self.security_groups.get(group_id, ctx)
            if group["project_id"] != project_id:
                raise self.security_groups.missing(group_id)
        return list(dict.fromkeys(group_ids))

    def view(self, obj: JSON, ctx: Context) -> JSON:
        return policy.hide_binding(obj, ctx)


class PortOwner(Resource):
    """A resource whose objects hold ports of their own (router interfaces,
    floating IPs): it creates and deletes them through the port service."""

    def __init__(
        self, store: Store, *, networks: Collection, subnets: Collection, ports: Ports
    ) -> None:
        super().__init__(store)
        self.networks = networks
        self.subnets = subnets
        self.ports = ports


def _check_port_security(
    enabled: bool, pairs: Sequence[object], groups: list[str] | None, current: list[str]
) -> None:
    """Neutron's rules for a port whose port security is (or becomes) off: no
    address pairs, no security groups. ``groups`` are those the request sets
    (None: not given), ``current`` those the port has."""
    if enabled:
        return
    if pairs:
        raise conflict(
            "AddressPairAndPortSecurityRequired",
            "Port Security must be enabled in order to have allowed address pairs on a port.",
        )
    if groups:
        raise bad_request(
            "Port security must be enabled and port must have an IP address in order to use"
            " security groups.",
            "PortSecurityAndIPRequiredForSecurityGroups",
        )
    if groups is None and current:
        raise conflict(
            "PortSecurityPortHasSecurityGroup",
            "Port has security group associated. Cannot disable port security or IP address"
            " until security group is removed",
        )


def _fixed(claim: _Claim) -> JSON:
    return {"subnet_id": claim.subnet_id, "ip_address": claim.address}


def set_statuses(store: Store, host: str, statuses: Mapping[str, str]) -> list[str]:
    """Set the Neutron status of each port (id -> status, a host agent's
    report) that is bound to ``host``; the ports whose status changed. One
    read for them all (agents resend statuses that have not changed), then
    the write path of API updates for those that differ; an unchanged status
    writes nothing, so steady heartbeats do not churn revisions."""

    def plan_for(status: str) -> Callable[[JSON], tuple[JSON, list[Op]] | None]:
        def plan(port: JSON) -> tuple[JSON, list[Op]] | None:
            if port.get("binding:host_id") != host or port.get("status") == status:
                return None
            return {"status": status}, []

        return plan

    wanted = {port_id: status for port_id, status in statuses.items() if "/" not in port_id}
    stored = store.get_many([neutron_key("ports", port_id) for port_id in wanted])
    changed = []
    for port_id, status in wanted.items():
        key, plan = neutron_key("ports", port_id), plan_for(status)
        kv = stored.get(key)
        if kv is None or plan(kv.value) is None:
            continue  # gone, or as reported already
        try:
            if revise(store, key, plan) is not None:
                changed.append(port_id)
        except KeyNotFoundError:
            continue
        except Contended:
            raise busy(Ports.label, port_id) from None
    return changed


def _contention(network: JSON) -> Conflict:
    return conflict(
        "IpAddressGenerationFailure",
        f"Could not allocate an address on network {network['id']}: too much contention;"
        " try again.",
    )


def _random_mac() -> str:
    return MAC_PREFIX + "".join(f":{b:02x}" for b in secrets.token_bytes(3))


def _vif_type(host: str) -> str:
    # Calico's VIF type: a routed tap device on the host.
    return "tap" if host else "unbound"


# The MAC of the host end of every tap (networking-calico's): Nova's libvirt
# driver creates the tap with it (plug_tap reads vif_details["mac_address"]).
# The host answers for every address on the link by proxy ARP, so one MAC
# for all taps is enough.
TAP_MAC = "00:61:fe:ed:ca:fe"


def vif_details(host: str) -> JSON:
    """The binding:vif_details Nova's libvirt driver takes for a ``tap`` VIF:
    port_filter (the host filters, so Nova adds no filter of its own) and the
    tap's MAC."""
    return {"port_filter": True, "mac_address": TAP_MAC} if host else {}


def _automatic(subnets: list[JSON]) -> list[_Request]:
    """No fixed_ips given: one address of each IP version the network has,
    from the first subnet of that version with room."""
    requests = []
    for version in (4, 6):
        candidates = [s for s in subnets if s["ip_version"] == version]
        if candidates:
            requests.append(_Request(candidates))
    return requests


def _keep_existing(
    current: list[JSON], requests: list[_Request]
) -> tuple[list[JSON], list[_Request]]:
    """An update keeps the addresses it names again, and for an entry that
    gives only a subnet the port is already on, the address it has there
    (as Neutron does). Returns the kept addresses and what is left to claim."""
    named = {r.address for r in requests if r.address is not None}
    kept: list[JSON] = []
    rest: list[_Request] = []
    for r in sorted(requests, key=lambda q: q.address is None):
        subnet_id = r.subnets[0]["id"]
        match = next(
            (
                f
                for f in current
                if f not in kept
                and f["subnet_id"] == subnet_id
                and (f["ip_address"] == r.address if r.address else f["ip_address"] not in named)
            ),
            None,
        )
        if match is None:
            rest.append(r)
        else:
            kept.append(match)
    return kept, rest


def _pairs(pairs: list[JSON], subnets: list[JSON], port_mac: str) -> list[JSON]:
    """Each pair's address or CIDR must lie inside a subnet of the port's network:
    the fabric routes only addresses it knows the network for. Other ports may
    hold the same pair (that is how an address gets several holders: anycast)."""
    out: list[JSON] = []
    seen: set[tuple[str, str]] = set()
    for pair in pairs:
        network = ipaddress.ip_network(pair["ip_address"])
        mac = pair["mac_address"] or port_mac
        if (str(network), mac) in seen:
            # Neutron's DuplicateAddressPairInRequest.
            raise bad_request(
                f"Invalid input for allowed_address_pairs. Reason: the pair"
                f" {pair['ip_address']} / {mac} is given twice."
            )
        seen.add((str(network), mac))
        if not any(
            network.version == s["ip_version"]
            and network.subnet_of(ipaddress.ip_network(s["cidr"]))
            for s in subnets
        ):
            raise bad_request(
                f"Invalid input for allowed_address_pairs. Reason: {pair['ip_address']} is not"
                " inside any subnet of the port's network."
            )
        out.append({"ip_address": pair["ip_address"], "mac_address": mac})
    return out
