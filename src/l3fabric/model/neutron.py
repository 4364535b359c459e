"""Request bodies of the Neutron v2.0 resources, validated with pydantic.

One model per resource serves both POST and PUT: the fields a client sent
are ``model_fields_set``, so "absent" and "null" stay distinct (a subnet's
``gateway_ip: null`` means "no gateway", absent means "the first address").
Field-level checks live here; checks that need the store (overlaps, address
inside the subnet, references) live in the service layer.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from l3fabric.addresses import (
    IpAddressOrNetworkText,
    IpAddressText,
    IpPrefixText,
    parse_address,
    parse_network,
)
from l3fabric.model.bounded import BoundedJson

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def _cidr(value: str) -> str:
    """A subnet CIDR exactly as Neutron wants it: no host bits, prefix not 0."""
    if "/" not in value:
        raise ValueError(f"'{value}' is not a valid IP subnet (no prefix length)")
    network = parse_network(value, strict=False, what="IP subnet")
    if parse_address(value.partition("/")[0]) != network.network_address:
        raise ValueError(
            f"'{value}' isn't a recommended IP address, '{network}' is the recommended value"
        )
    if network.prefixlen == 0:
        raise ValueError(f"'{value}': prefix length 0 (a subnet of every address) is not allowed")
    return str(network)


def _mac(value: str) -> str:
    mac = value.lower().replace("-", ":")
    if not _MAC.match(mac):
        raise ValueError(f"'{value}' is not a valid MAC address")
    if int(mac[:2], 16) & 1:
        raise ValueError(f"'{value}' is a multicast MAC address; a port needs a unicast one")
    return mac


# Addresses and prefixes are stored in canonical text; zone IDs are refused (addresses.py).
IpAddress = IpAddressText
Cidr = Annotated[str, AfterValidator(_cidr)]
IpOrCidr = IpAddressOrNetworkText
Prefix = IpPrefixText
MacAddress = Annotated[str, AfterValidator(_mac)]
Name = Annotated[str, StringConstraints(max_length=255)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class Body(BaseModel):
    """Common to every resource body: unknown attributes are an error."""

    model_config = ConfigDict(extra="forbid")

    # Which attributes may only be given on create, and which must be.
    CREATE_ONLY: ClassVar[frozenset[str]] = frozenset()
    REQUIRED: ClassVar[frozenset[str]] = frozenset()

    description: Name = ""
    project_id: Id | None = None
    tenant_id: Id | None = None

    def api_attrs(self) -> dict[str, Any]:
        """The attributes the client sent, by their API names."""
        return self.model_dump(by_alias=True, include=self.model_fields_set)


class NamedBody(Body):
    name: Name = ""


_STANDARD_CREATE_ONLY = frozenset({"project_id", "tenant_id"})


class NetworkBody(NamedBody):
    CREATE_ONLY = _STANDARD_CREATE_ONLY

    admin_state_up: bool = True
    shared: bool = False
    # The default of the network's new ports (extension port-security).
    port_security_enabled: bool = True
    router_external: bool = Field(False, alias="router:external")
    mtu: int = Field(1500, ge=68, le=9216)
    provider_network_type: Literal["local", "flat", "vlan", "vxlan", "gre", "geneve"] = Field(
        "local", alias="provider:network_type"
    )
    provider_physical_network: Name | None = Field(None, alias="provider:physical_network")
    provider_segmentation_id: int | None = Field(
        None, alias="provider:segmentation_id", ge=0, le=2**24 - 1
    )


class AllocationPool(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: IpAddress
    end: IpAddress


class HostRoute(BaseModel):
    model_config = ConfigDict(extra="forbid")
    destination: Prefix
    nexthop: IpAddress


Ipv6Mode = Literal["slaac", "dhcpv6-stateful", "dhcpv6-stateless"] | None


class SubnetBody(NamedBody):
    CREATE_ONLY = _STANDARD_CREATE_ONLY | {
        "network_id",
        "cidr",
        "ip_version",
        "ipv6_ra_mode",
        "ipv6_address_mode",
        "subnetpool_id",
    }
    REQUIRED = frozenset({"network_id", "cidr"})

    network_id: Id = ""
    cidr: Cidr = ""
    ip_version: Literal[4, 6] = 4
    gateway_ip: IpAddress | None = None
    allocation_pools: list[AllocationPool] = []
    enable_dhcp: bool = True
    dns_nameservers: list[IpAddress] = []
    host_routes: list[HostRoute] = []
    ipv6_ra_mode: Ipv6Mode = None
    ipv6_address_mode: Ipv6Mode = None
    subnetpool_id: None = None


class FixedIp(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subnet_id: Id | None = None
    ip_address: IpAddress | None = None


class AddressPair(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ip_address: IpOrCidr
    mac_address: MacAddress | None = None


class PortBody(NamedBody):
    CREATE_ONLY = _STANDARD_CREATE_ONLY | {"network_id"}
    REQUIRED = frozenset({"network_id"})

    network_id: Id = ""
    admin_state_up: bool = True
    mac_address: MacAddress = ""
    fixed_ips: list[FixedIp] = []
    device_id: Name = ""
    device_owner: Name = ""
    security_groups: list[Id] = []
    allowed_address_pairs: list[AddressPair] = []
    # Absent on create: the network's value.
    port_security_enabled: bool = True
    binding_host_id: Name = Field("", alias="binding:host_id")
    binding_profile: BoundedJson = Field({}, alias="binding:profile")
    binding_vnic_type: Literal["normal"] = Field("normal", alias="binding:vnic_type")


class SecurityGroupBody(NamedBody):
    CREATE_ONLY = _STANDARD_CREATE_ONLY


class SecurityGroupRuleBody(Body):
    # Neutron has no update of rules: delete and create instead.
    CREATE_ONLY = frozenset(
        {
            "security_group_id",
            "direction",
            "ethertype",
            "protocol",
            "port_range_min",
            "port_range_max",
            "remote_ip_prefix",
            "remote_group_id",
        }
    )
    REQUIRED = frozenset({"security_group_id", "direction"})

    security_group_id: Id = ""
    direction: Literal["ingress", "egress"] = "ingress"
    ethertype: Literal["IPv4", "IPv6"] = "IPv4"
    protocol: str | int | None = None
    port_range_min: int | None = Field(None, ge=0, le=65535)
    port_range_max: int | None = Field(None, ge=0, le=65535)
    remote_ip_prefix: Prefix | None = None
    remote_group_id: Id | None = None


class ExternalGatewayInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network_id: Id
    enable_snat: bool = True
    external_fixed_ips: list[FixedIp] = []


class RouterBody(NamedBody):
    CREATE_ONLY = _STANDARD_CREATE_ONLY

    admin_state_up: bool = True
    external_gateway_info: ExternalGatewayInfo | None = None


class FloatingIpBody(Body):
    # Which address and network are fixed at create; association is what changes.
    CREATE_ONLY = _STANDARD_CREATE_ONLY | {
        "floating_network_id",
        "floating_ip_address",
        "subnet_id",
    }
    REQUIRED = frozenset({"floating_network_id"})

    floating_network_id: Id = ""
    floating_ip_address: IpAddress | None = None
    subnet_id: Id | None = None
    port_id: Id | None = None
    fixed_ip_address: IpAddress | None = None


class RouterInterfaceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subnet_id: Id | None = None
    port_id: Id | None = None
