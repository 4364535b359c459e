"""Bodies of the fabric API (``/v1``), validated with pydantic: the fabric
configuration, host and gateway registrations, and their heartbeats.

Field-level checks live here; what needs the store lives in
``l3fabric.service.fabric``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from l3fabric.addresses import (
    IpAddressText,
    IpNetworkText,
    Ipv4AddressText,
    PeerAddressText,
    parse_address,
)
from l3fabric.model.bounded import BoundedJson, json_bytes

Asn = Annotated[int, Field(ge=1, le=4_294_967_294)]
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
Name = Annotated[str, Field(pattern=f"^{NAME_RE.pattern}$")]
PortStatus = Literal["ACTIVE", "DOWN", "ERROR"]
# A TCP-MD5 key as BIRD's ``password "..."`` takes it: printable ASCII without
# quote or backslash (nothing can end or escape the string), at most 80 bytes
# (the kernel's TCP_MD5SIG_MAXKEYLEN).
BgpPassword = Annotated[str, Field(pattern=r"^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,80}$")]


class _Strict(BaseModel):
    # A misspelt field must be an error, not silently ignored.
    model_config = ConfigDict(extra="forbid")


class Bfd(_Strict):
    enabled: bool = True
    interval_ms: int = Field(100, ge=10, le=60_000)
    multiplier: int = Field(3, ge=1, le=255)


class GracefulRestart(_Strict):
    enabled: bool = True
    restart_time_s: int = Field(120, ge=1, le=4095)


class FabricConfig(_Strict):
    """Everything the agents need to render BIRD, with Calico-like defaults."""

    asn: Asn = 65000
    peering: Literal["gateway", "mesh", "reflectors"] = "gateway"
    host_asn: Literal["same", "per-host"] = "same"
    route_reflectors: list[PeerAddressText] = []
    bfd: Bfd = Bfd()
    graceful_restart: GracefulRestart = GracefulRestart()
    keepalive_s: int = Field(30, ge=1, le=21_845)
    hold_s: int = Field(90, ge=0, le=65_535)
    heartbeat_interval_s: float = Field(2.0, gt=0, le=3600)
    # TCP-MD5 password of every fabric BGP session (hosts, gateways); None: none.
    bgp_password: BgpPassword | None = None
    # Routes a gateway accepts from one fabric peer before it restarts the
    # session (BIRD "import limit N action restart"): twice the 10,000
    # endpoints a host serves (docs/measurements.md). 0: no limit.
    bgp_import_limit: int = Field(20_000, ge=0, le=100_000_000)

    @model_validator(mode="after")
    def _consistent(self) -> FabricConfig:
        if self.peering == "reflectors" and not self.route_reflectors:
            raise ValueError('peering "reflectors" needs at least one address in route_reflectors')
        # RFC 4271: the hold time is 0 (no keepalives) or at least 3 s.
        if 0 < self.hold_s < 3:
            raise ValueError("hold_s must be 0 or at least 3")
        if self.hold_s and self.keepalive_s >= self.hold_s:
            raise ValueError("keepalive_s must be smaller than hold_s")
        return self


class Peer(_Strict):
    name: Name
    address: PeerAddressText
    asn: Asn
    # This end's address of the session; None: chosen by the agent (docs/fabric-api.md).
    local: PeerAddressText | None = None

    @model_validator(mode="after")
    def _same_family(self) -> Peer:
        local, address = self.local, parse_address(self.address)
        if local is not None and parse_address(local).version != address.version:
            raise ValueError(f"local {local} and address {address} differ in family")
        return self


def _unique_names(peers: list[Peer]) -> list[Peer]:
    # A peer's name names its BGP session (BIRD protocol "p:NAME"): one name, one session.
    names = [p.name for p in peers]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"peer names must be unique in a list: {', '.join(twice)} repeated")
    return peers


Peers = Annotated[list[Peer], AfterValidator(_unique_names)]


class GatewayRegistration(_Strict):
    name: Name | None = None
    router_id: Ipv4AddressText
    asn: Asn | None = None
    fabric_addresses: list[PeerAddressText] = Field(min_length=1)
    upstream: Peers = []
    snat_address: IpAddressText | None = None
    # The gateway's BGP neighbours in the fabric; None: derived from the fabric's peering mode.
    fabric_peers: Peers | None = None
    # Prefixes besides the subnets that the gateway accepts from the fabric
    # (router loopbacks, link nets), e.g. ["172.16.0.0/16", "172.17.0.0/16"].
    infrastructure: list[IpNetworkText] = []


class HostRegistration(_Strict):
    name: Name | None = None
    router_id: Ipv4AddressText
    address: PeerAddressText
    asn: Asn | None = None
    peers: Peers | None = None
    rack: Name | None = None


class BgpSession(_Strict):
    name: str
    peer: str = ""
    state: str
    info: str = ""
    # When the session entered its state (BIRD's "since"), and the routes it
    # imported from the peer and exports to it now (all channels).
    since: str = ""
    routes_in: int = Field(0, ge=0)
    routes_out: int = Field(0, ge=0)
    # Routes from this peer that the import filter refuses, now (a gateway's
    # fabric sessions; BIRD keeps them, marked filtered: docs/gateway.md).
    rejected: int = Field(0, ge=0)


# What heartbeats store grows with the fabric: a BGP session per peer (a
# mesh of 1,000 hosts: ~160 KB with since and route counts), an anycast
# entry per group and next hop.
# The port statuses are applied, not stored; the body limit bounds them.
BgpSessions = Annotated[list[BgpSession], json_bytes(256 * 1024)]
AnycastStatus = Annotated[dict[str, Any], json_bytes(256 * 1024)]


class HostHeartbeat(_Strict):
    ports: dict[str, PortStatus] = {}
    bgp: BgpSessions = []
    agent: BoundedJson = {}


class GatewayHeartbeat(_Strict):
    bgp: BgpSessions = []
    nat: BoundedJson = {}
    agent: BoundedJson = {}
    # Programmed anycast groups: {"prefixes": [{"prefix", "next_hops": [{via, dev, weight}]}]}
    anycast: AnycastStatus = {}
