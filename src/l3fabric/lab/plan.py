"""The lab's addressing and wiring plan, derived from a topology.

The plan is everything concrete: which namespaces exist, which veth joins
which two nodes under which names, every address, every AS number and every
BGP session. ``lab up`` builds it, writes it as JSON into the lab's state
directory, and every later command (status, boot, exec, down) reads it back,
so they need not re-derive anything from the YAML.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, Field

from l3fabric.lab.topology import Topology, TopologyError

Role = Literal["host", "tor", "gateway", "internet", "client", "mgmt"]
LinkKind = Literal["fabric", "upstream", "client", "mgmt", "sync"]

# Roles whose BIRD the lab configures itself (hosts get theirs from the agent).
ROUTER_ROLES = ("tor", "gateway", "internet")
# Roles that reach the controller over the management network.
MANAGED_ROLES = ("host", "gateway")

MGMT_IFACE = "l3f-mgmt"  # the node's end of its management veth
MGMT_BRIDGE = "l3f-br"  # the bridge in the mgmt namespace
API_PORT_IN_MGMT = 9696  # the controller's port on the management network


def namespace(lab: str, node: str) -> str:
    return f"l3f-{lab}-{node}"


def vm_namespace(lab: str, vm: str) -> str:
    return f"l3f-{lab}-vm-{vm}"


class Link(BaseModel):
    """One veth pair. Side a is the upper node (nearer the internet)."""

    kind: LinkKind
    a: str
    b: str
    a_ifname: str
    b_ifname: str
    a4: str  # "172.16.0.0/31"
    b4: str
    a6: str | None = None
    b6: str | None = None


class Node(BaseModel):
    name: str
    role: Role
    namespace: str
    asn: int | None = None
    router_id: str | None = None  # also the /32 on lo
    loopback6: str | None = None
    rack: str | None = None
    mgmt_address: str | None = None  # "172.31.254.2/24"


class Session(BaseModel):
    """One eBGP session as seen from ``node``: on the link's addresses."""

    node: str
    peer: str
    peer_role: Role
    peer_asn: int
    local: str  # address without prefix length
    remote: str
    ifname: str


class Plan(BaseModel):
    lab: str
    api_port: int  # the first controller's; controller i (from 0) listens on api_port + i
    controllers: int = 1
    store: str = "sqlite"
    etcd_members: int = 1  # with store etcd: the members of its cluster
    mgmt_network: str
    controller_mgmt: str  # the controller's address in the mgmt namespace
    public: list[str]
    snat_pool: str | None = None  # a gateway pair's shared SNAT pool (topology addressing)
    # The fabric's own prefixes (link nets, loopbacks): the gateway accepts them from the fabric.
    infrastructure: list[str] = Field(default_factory=list)
    fabric_asn: int
    host_asn: Literal["same", "per-host"] = "per-host"  # the topology's fabric.host_asn
    # The topology's fabric.bgp_password and fabric.bgp_import_limit.
    bgp_password: str | None = "l3fabric-lab"
    bgp_import_limit: int = 20_000
    nodes: dict[str, Node]
    links: list[Link]
    routes: dict[str, list[str]] = Field(
        default_factory=dict
    )  # static routes per node ("ip route" args)

    def node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise KeyError(f"lab {self.lab} has no node {name!r}") from None

    def by_role(self, *roles: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.role in roles]

    def api_url(self) -> str:
        """The first controller's URL for commands in the root namespace."""
        return self.api_urls()[0]

    def api_urls(self) -> list[str]:
        """Every controller's URL for commands in the root namespace."""
        return [f"http://127.0.0.1:{self.api_port + i}" for i in range(self.controllers)]

    def agent_api_urls(self) -> list[str]:
        """Every controller's URL for agents inside the lab (one address, a port each)."""
        return [
            f"http://{self.controller_mgmt}:{API_PORT_IN_MGMT + i}" for i in range(self.controllers)
        ]

    def agent_api_url(self) -> str:
        """The agents' ``--api``: every controller, comma-separated."""
        return ",".join(self.agent_api_urls())

    def controller_names(self) -> list[str]:
        """The controllers' process names (pid and log files): server, server-2, ..."""
        return ["server"] + [f"server-{i}" for i in range(2, self.controllers + 1)]

    def sessions(self, node: str) -> list[Session]:
        """The eBGP sessions of ``node`` (IPv4 and IPv6), one per link and family."""
        out = []
        for link in self.links:
            if link.kind not in ("fabric", "upstream") or node not in (link.a, link.b):
                continue
            mine_a = link.a == node
            peer = self.nodes[link.b if mine_a else link.a]
            ifname = link.a_ifname if mine_a else link.b_ifname
            pairs = [(link.a4, link.b4), (link.a6, link.b6)]
            for a, b in pairs:
                if a is None or b is None:
                    continue
                local, remote = (a, b) if mine_a else (b, a)
                out.append(
                    Session(
                        node=node,
                        peer=peer.name,
                        peer_role=peer.role,
                        peer_asn=peer.asn or 0,
                        local=local.split("/")[0],
                        remote=remote.split("/")[0],
                        ifname=ifname,
                    )
                )
        return out

    def interfaces(self, node: str) -> list[tuple[str, list[str]]]:
        """(ifname, addresses with prefix) of every lab link end in ``node``."""
        out = []
        for link in self.links:
            if link.a == node:
                out.append((link.a_ifname, [x for x in (link.a4, link.a6) if x]))
            if link.b == node:
                out.append((link.b_ifname, [x for x in (link.b4, link.b6) if x]))
        return out


class _Pool:
    """Hands out consecutive point-to-point subnets (or single addresses) of a range."""

    def __init__(self, field: str, network: str, prefixlen: int) -> None:
        self.field = field
        self.network = ipaddress.ip_network(network)
        self.prefixlen = prefixlen
        self.step = 2 ** (self.network.max_prefixlen - prefixlen)
        self.used = 0

    def _next(self) -> int:
        first = int(self.network.network_address) + self.used * self.step
        if first + self.step - 1 > int(self.network.broadcast_address):
            raise TopologyError(
                f"addressing.{self.field}: {self.network} is too small for this topology"
            )
        self.used += 1
        return first

    def pair(self) -> tuple[str, str]:
        first = self._next()
        addr = ipaddress.ip_address
        return (
            f"{addr(first)}/{self.prefixlen}",
            f"{addr(first + 1)}/{self.prefixlen}",
        )

    def single(self) -> str:
        return str(ipaddress.ip_address(self._next()))


def build_plan(topo: Topology) -> Plan:
    """Derive every name, address, AS number and link from ``topo``."""
    ad = topo.addressing
    lab = topo.name
    pools = {
        "fabric": (_Pool("fabric", ad.fabric, 31), _Pool("fabric6", ad.fabric6, 127)),
        "upstream": (_Pool("upstream", ad.upstream, 31), _Pool("upstream6", ad.upstream6, 127)),
        "client": (_Pool("clients", ad.clients, 31), _Pool("clients6", ad.clients6, 127)),
    }
    sync_pool = _Pool("sync", ad.sync, 31)
    loop4 = _Pool("loopbacks", ad.loopbacks, 32)
    loop6 = _Pool("loopbacks6", ad.loopbacks6, 128)
    loop4.used = loop6.used = 1  # skip the network address
    mgmt_net = ipaddress.ip_network(ad.management)
    mgmt_hosts = mgmt_net.hosts()
    controller = str(next(mgmt_hosts))

    nodes: dict[str, Node] = {}

    def add(name: str, role: Role, asn: int | None, rack: str | None = None) -> Node:
        node = Node(
            name=name,
            role=role,
            namespace=namespace(lab, name),
            asn=asn,
            router_id=loop4.single(),
            loopback6=loop6.single(),
            rack=rack,
        )
        if role in MANAGED_ROLES:
            try:
                node.mgmt_address = f"{next(mgmt_hosts)}/{mgmt_net.prefixlen}"
            except StopIteration:
                raise TopologyError(
                    f"addressing.management: {mgmt_net} is too small for this topology"
                ) from None
        nodes[name] = node
        return node

    links: list[Link] = []
    counters = {"fabric": 0, "upstream": 0, "client": 0}
    letters = {"fabric": "f", "upstream": "u", "client": "c"}

    def link(kind: LinkKind, a: Node, b: Node) -> None:
        p4, p6 = pools[kind]
        a4, b4 = p4.pair()
        a6, b6 = p6.pair()
        ifname = f"l3f-{letters[kind]}{counters[kind]}"
        counters[kind] += 1
        links.append(
            Link(
                kind=kind,
                a=a.name,
                b=b.name,
                a_ifname=ifname,
                b_ifname=ifname,
                a4=a4,
                b4=b4,
                a6=a6,
                b6=b6,
            )
        )

    internet = add("internet", "internet", topo.asn.internet)
    gateways = [add(g.name, "gateway", topo.asn.fabric) for g in topo.gateways]
    for gw in gateways:
        link("upstream", internet, gw)
    if ad.snat_pool is not None:
        # The pair's state-sync link: IPv4 only, no BGP on it (conntrackd's UDP).
        a4, b4 = sync_pool.pair()
        links.append(
            Link(
                kind="sync",
                a=gateways[0].name,
                b=gateways[1].name,
                a_ifname="l3f-s0",
                b_ifname="l3f-s0",
                a4=a4,
                b4=b4,
            )
        )
    host_index = 0
    for rack_index, rack in enumerate(topo.racks, start=1):
        tor = None
        if rack.tor:
            tor = add(f"{rack.name}-tor", "tor", topo.asn.tor_base + rack_index, rack.name)
            for gw in gateways:
                link("fabric", gw, tor)
        for host_name in rack.host_names():
            host_index += 1
            same = topo.fabric.host_asn == "same"
            asn = topo.asn.fabric if same else topo.asn.host_base + host_index
            host = add(host_name, "host", asn, rack.name)
            for upper in [tor] if tor else gateways:
                link("fabric", upper, host)
    routes: dict[str, list[str]] = {}
    for client_name in topo.internet.client_names():
        client = add(client_name, "client", None)
        link("client", internet, client)
        mine = links[-1]
        # A client is a plain machine: its default route points at the internet router.
        routes[client.name] = [
            f"default via {mine.a4.split('/')[0]}",
            f"default via {mine.a6.split('/')[0]}" if mine.a6 else "",
        ]
        routes[client.name] = [r for r in routes[client.name] if r]

    mgmt = Node(name="mgmt", role="mgmt", namespace=namespace(lab, "mgmt"))
    nodes["mgmt"] = mgmt
    for index, node in enumerate(n for n in nodes.values() if n.mgmt_address):
        links.append(
            Link(
                kind="mgmt",
                a="mgmt",
                b=node.name,
                a_ifname=f"l3f-m{index}",
                b_ifname=MGMT_IFACE,
                a4="",
                b4=node.mgmt_address or "",
            )
        )

    for asn, who in ((topo.asn.fabric, "fabric"), (topo.asn.internet, "internet")):
        clash = [
            n.name
            for n in nodes.values()
            if n.asn == asn
            and n.role not in ("gateway", "internet")
            and not (n.role == "host" and who == "fabric" and topo.fabric.host_asn == "same")
        ]
        if clash:
            raise TopologyError(f"asn.{who}: {asn} is also the AS of {', '.join(clash)}")

    return Plan(
        lab=lab,
        api_port=topo.api.port,
        controllers=topo.controllers,
        store=topo.store,
        etcd_members=topo.etcd_members or 1,
        mgmt_network=str(mgmt_net),
        controller_mgmt=controller,
        public=list(ad.public),
        snat_pool=ad.snat_pool,
        infrastructure=[ad.fabric, ad.fabric6, ad.loopbacks, ad.loopbacks6],
        fabric_asn=topo.asn.fabric,
        host_asn=topo.fabric.host_asn,
        bgp_password=topo.fabric.bgp_password,
        bgp_import_limit=topo.fabric.bgp_import_limit,
        nodes=nodes,
        links=links,
        routes=routes,
    )
