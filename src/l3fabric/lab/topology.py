"""The lab topology file: its pydantic model and YAML loading.

A topology says what to build (racks, hosts, ToRs, gateways, the internet
router's clients), the address ranges and the AS numbers. Everything has a
default except ``name`` and ``racks``. A wrong file raises ``TopologyError``
whose message names the field path (``racks[1].hosts: ...``).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from l3fabric.model.fabric import BgpPassword

LAB_NAME = re.compile(r"^[a-z][a-z0-9]{0,9}$")
NODE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
# Names the lab uses for its own namespaces; a node may not take them.
RESERVED = {"mgmt", "internet", "vm"}

# Address ranges a lab may use: documentation and private ranges only, so a
# lab can never announce or reach anything real.
ALLOWED_RANGES = [
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "2001:db8::/32",
    )
]


class TopologyError(ValueError):
    """A topology file that cannot be used; the message names the field."""


def _node_name(value: str) -> str:
    if not NODE_NAME.match(value):
        raise ValueError(
            "must start with a letter and hold only a-z, 0-9 and '-' (at most 20 characters)"
        )
    if value in RESERVED or value.startswith("vm-"):
        raise ValueError(f"{value!r} is reserved by the lab")
    return value


NodeName = Annotated[str, AfterValidator(_node_name)]


def _shape(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | list):
        raise ValueError("must be a positive integer or a list of names")
    return value


def _count_or_names(value: Any) -> str:
    return "count" if isinstance(value, int) and not isinstance(value, bool) else "names"


# "3" or "[a, b, c]": a tagged union, so a bad name in the list is reported
# once instead of also as "not an integer".
CountOrNames = Annotated[
    Annotated[int, Tag("count")] | Annotated[list[NodeName], Tag("names")],
    Discriminator(_count_or_names),
    BeforeValidator(_shape),
]


def _allowed(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> None:
    if not any(net.version == r.version and net.subnet_of(r) for r in ALLOWED_RANGES):  # type: ignore[arg-type]
        allowed = ", ".join(str(r) for r in ALLOWED_RANGES)
        raise ValueError(f"{net} is outside the ranges a lab may use ({allowed})")


def _v4(value: str) -> str:
    net = ipaddress.ip_network(value, strict=True)
    if net.version != 4:
        raise ValueError("must be an IPv4 network")
    _allowed(net)
    return str(net)


def _v6(value: str) -> str:
    net = ipaddress.ip_network(value, strict=True)
    if net.version != 6:
        raise ValueError("must be an IPv6 network")
    _allowed(net)
    return str(net)


def _any(value: str) -> str:
    net = ipaddress.ip_network(value, strict=True)
    _allowed(net)
    return str(net)


V4Net = Annotated[str, AfterValidator(_v4)]
V6Net = Annotated[str, AfterValidator(_v6)]
AnyNet = Annotated[str, AfterValidator(_any)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Addressing(_Strict):
    """Where each kind of lab address comes from."""

    fabric: V4Net = "172.16.0.0/16"  # host-ToR, host-gateway, ToR-gateway links: /31 each
    fabric6: V6Net = "2001:db8:ff00::/64"  # the same links: /127 each
    loopbacks: V4Net = "172.17.0.0/16"  # router ids, one /32 on each node's lo
    loopbacks6: V6Net = "2001:db8:ff01::/64"
    management: V4Net = "172.31.254.0/24"  # agents -> controller; .1 is the controller
    upstream: V4Net = "192.0.2.0/24"  # gateway-internet links: /31 each
    upstream6: V6Net = "2001:db8:ff02::/64"
    clients: V4Net = "198.51.100.0/24"  # internet router-client links: /31 each
    clients6: V6Net = "2001:db8:ff03::/64"
    # The aggregates the gateways announce to the internet (the public
    # networks' subnets should come from these).
    public: list[AnyNet] = Field(default_factory=lambda: ["203.0.113.0/24", "2001:db8:100::/48"])
    # A gateway pair's shared SNAT pool (null: each gateway NATs to its own
    # upstream address). Set: the two gateways share it, each with half the
    # ports, and sync their NAT state over a link of ``sync`` (docs/gateway.md).
    snat_pool: V4Net | None = None
    sync: V4Net = "172.18.0.0/24"  # gateway-gateway state-sync links: /31 each


class ASNs(_Strict):
    """eBGP everywhere: every link is a session between two different ASes."""

    fabric: int = Field(default=65000, ge=1, le=4294967294)  # the gateways
    tor_base: int = Field(default=65100, ge=1, le=4294967294)  # rack i's ToR: tor_base + i
    host_base: int = Field(default=4200000000, ge=1, le=4294967294)  # host i: host_base + i
    internet: int = Field(default=64496, ge=1, le=4294967294)  # documentation ASN


class Rack(_Strict):
    name: NodeName
    hosts: CountOrNames
    tor: bool = True

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: int | list[str]) -> int | list[str]:
        if isinstance(value, int) and not 1 <= value <= 64:
            raise ValueError("must be a positive integer (at most 64) or a list of names")
        if isinstance(value, list) and not value:
            raise ValueError("must name at least one host")
        return value

    def host_names(self) -> list[str]:
        if isinstance(self.hosts, int):
            return [f"{self.name}-h{i}" for i in range(1, self.hosts + 1)]
        return list(self.hosts)


class Gateway(_Strict):
    name: NodeName


class Internet(_Strict):
    clients: CountOrNames = 1

    @field_validator("clients")
    @classmethod
    def _clients(cls, value: int | list[str]) -> int | list[str]:
        if isinstance(value, int) and not 0 <= value <= 64:
            raise ValueError("must be a count from 0 to 64 or a list of names")
        return value

    def client_names(self) -> list[str]:
        if isinstance(self.clients, int):
            return [f"client{i}" for i in range(1, self.clients + 1)]
        return list(self.clients)


class Fabric(_Strict):
    """The fabric config the lab gives the controller (the rest: the routers' timers)."""

    # "per-host": eBGP, every host its own AS (asn.host_base + i); "same":
    # the API's default, iBGP in asn.fabric, the gateway reflecting routes.
    host_asn: Literal["same", "per-host"] = "per-host"
    # The TCP-MD5 password of every fabric session (hosts, ToRs, gateways; null:
    # unsigned) and the routes a gateway takes from one fabric peer (0: no limit).
    bgp_password: BgpPassword | None = "l3fabric-lab"
    bgp_import_limit: int = Field(default=20_000, ge=0, le=100_000_000)


class Api(_Strict):
    port: int = Field(default=9696, ge=1, le=65535)  # controller on 127.0.0.1 in the root namespace


# How many controllers a lab may run (each one process, one port).
MAX_CONTROLLERS = 5
# The sizes an etcd cluster of the lab may have: odd, so a majority survives a loss.
ETCD_MEMBERS = (1, 3, 5)


class Topology(_Strict):
    name: str
    addressing: Addressing = Field(default_factory=Addressing)
    asn: ASNs = Field(default_factory=ASNs)
    racks: list[Rack] = Field(min_length=1)
    gateways: list[Gateway] = Field(default_factory=lambda: [Gateway(name="gw1")], min_length=1)
    internet: Internet = Field(default_factory=Internet)
    fabric: Fabric = Field(default_factory=Fabric)
    api: Api = Field(default_factory=Api)
    # Controller processes on one shared store; every agent gets all their URLs.
    controllers: int = Field(default=1, ge=1, le=MAX_CONTROLLERS)
    # The store the controllers share: "sqlite" (one file; safe for several
    # processes) or "etcd" (an etcd cluster on loopback).
    store: Literal["sqlite", "etcd"] = "sqlite"
    # With store etcd: its members (1, 3 or 5; default 1). Unset for sqlite.
    etcd_members: int | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not LAB_NAME.match(value):
            raise ValueError("must be 1-10 characters a-z and 0-9, starting with a letter")
        return value

    @model_validator(mode="after")
    def _unique(self) -> Topology:
        seen: set[str] = set()
        for name in self.node_names():
            if name in seen:
                raise ValueError(f"node name {name!r} is used twice")
            seen.add(name)
        if self.addressing.snat_pool is not None and len(self.gateways) != 2:
            # conntrackd's UDP sync joins two gateways; more would need a multicast segment.
            raise ValueError(
                f"addressing.snat_pool needs exactly two gateways (a pair), not {len(self.gateways)}"
            )
        with_tor = [r.name for r in self.racks if r.tor]
        if self.api.port + self.controllers - 1 > 65535:
            raise ValueError(
                f"api.port: controllers use ports {self.api.port} to"
                f" {self.api.port + self.controllers - 1}, beyond 65535"
            )
        if self.etcd_members is not None:
            if self.store != "etcd":
                raise ValueError(
                    f"etcd_members: {self.etcd_members} needs store: etcd (the store is {self.store})"
                )
            if self.etcd_members not in ETCD_MEMBERS:
                raise ValueError(
                    f"etcd_members: {self.etcd_members}: an etcd cluster here has 1, 3 or 5"
                    " members (odd: a majority must stay up; 3 survive the loss of one)"
                )
        if self.fabric.host_asn == "same" and with_tor:
            # A ToR in its own AS passes routes whose AS path holds the fabric
            # AS; hosts and gateways in that AS drop them (loop prevention).
            raise ValueError(
                'fabric.host_asn "same" needs racks without a ToR (tor: false): hosts then'
                " peer with the gateways directly, which reflect their routes; racks with a"
                f" ToR: {', '.join(with_tor)}"
            )
        return self

    def node_names(self) -> list[str]:
        names = [r.name + "-tor" for r in self.racks if r.tor]
        for rack in self.racks:
            names += rack.host_names()
        names += [g.name for g in self.gateways]
        names += self.internet.client_names()
        return names


def _location(loc: tuple[Any, ...]) -> str:
    """Turn pydantic's ('racks', 1, 'hosts', 'int') into 'racks[1].hosts'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("count", "names"):
            # Union tags show up in the path; the user's field is the parent.
            continue
        elif out:
            out += f".{part}"
        else:
            out = str(part)
    return out or "(top level)"


def parse_topology(text: str, source: str = "topology") -> Topology:
    """Validate YAML text; raise TopologyError naming every bad field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TopologyError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise TopologyError(f"{source}: must be a YAML mapping with at least name and racks")
    try:
        return Topology.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            line = f"{_location(err['loc'])}: {msg}"
            if line not in problems:
                problems.append(line)
        raise TopologyError(f"{source}: " + "; ".join(problems)) from None


def load_topology(path: str | Path) -> Topology:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TopologyError(f"cannot read topology {path}: {exc.strerror}") from exc
    return parse_topology(text, str(path))
