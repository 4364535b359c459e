"""``l3fabric bench anycast``: what happens to established flows when an anycast member leaves.

Parts are functions ``(Context) -> dict`` in ``PARTS``; ``run`` merges their
results (``--set parts=rehash``). Part ``failover`` (a), in a lab with the
real agents, lives in ``anycast_failover.py`` (``--set tries=N``, 10).

Part ``rehash`` (b): a router namespace with one veth to each of ``members``
(4) member namespaces and one to a client namespace (``l3f-ba<tag>-*``). Every
member holds two anycast addresses on its loopback and answers TCP: to the
line ``?`` it replies with its own name. The router hashes on L4
(``fib_multipath_hash_policy=1``) and routes one address through our
resilient nexthop group (``ResilientRoutes``) and the other through a plain
kernel multipath route (``ip route replace ... nexthop via A nexthop via B
...``, hash-threshold). The client opens ``connections`` (300) long-lived
connections to each address and asks each "who are you". Then the last
member leaves both routes at once, and every connection asks again. A flow
that was on a surviving member and now gets another name, a reset or no
answer has moved (the new member has no such connection and resets it).
``moved_pct_*`` are those flows as a percentage of the flows on surviving
members. Target: 0 % with the resilient group.

All sockets live in this process: each is created inside its namespace
(``netns.entered``) and a thread serves the members. Namespaces are removed
afterwards, also after a failure or SIGTERM.
"""

from __future__ import annotations

import contextlib
import resource
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from l3fabric.bench import anycast_failover
from l3fabric.bench.parts import OptionReader, require_root, run_parts
from l3fabric.dataplane import netns as netns_mod
from l3fabric.dataplane.nexthops import ResilientParams, ResilientRoutes
from l3fabric.lab.anycast_traffic import (
    SERVICE_PORT,
    Flow,
    Listen,
    MemberServers,
    ask,
    close_flows,
    open_flows,
)

Result = dict[str, float | int | str]

RESILIENT_ADDRESS = "203.0.113.10"
MULTIPATH_ADDRESS = "203.0.113.11"
PORT = SERVICE_PORT
CLIENT_ADDRESS, CLIENT_GATEWAY = "10.201.0.2", "10.201.0.1"


def _member_link(i: int) -> tuple[str, str]:
    """Router and member addresses of member ``i``'s /30 (private range, inside the namespaces)."""
    return f"10.202.{i}.1", f"10.202.{i}.2"


def _ip(netns: str, *args: str) -> None:
    done = subprocess.run(["ip", "-n", netns, *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip -n {netns} {' '.join(args)}: {done.stderr.strip()}")


def _sysctl(netns: str, key: str, value: str) -> None:
    with netns_mod.entered(netns), open(f"/proc/sys/{key.replace('.', '/')}", "w") as f:
        f.write(value)


@dataclass
class Topology:
    """The namespaces of one run: ``client``, ``router`` and ``members`` (name -> namespace)."""

    tag: str
    client: str
    router: str
    members: dict[str, str] = field(default_factory=dict)

    def router_if(self, member: str) -> str:
        return f"l3fba{self.tag}{member}"

    def gateways(self, names: list[str] | None = None) -> list[tuple[str, str]]:
        """(gateway address, router interface) of each member, in member order."""
        chosen = names if names is not None else list(self.members)
        index = {name: i for i, name in enumerate(self.members)}
        return [(_member_link(index[n])[1], self.router_if(n)) for n in chosen]


@contextlib.contextmanager
def topology(members: int, tag: str | None = None) -> Iterator[Topology]:
    """Client -- router -- ``members`` member namespaces, all removed on exit."""
    if not 2 <= members <= 9:
        raise ValueError(f"members must be within 2..9, got {members}")
    tag = tag or secrets.token_hex(2)
    topo = Topology(tag, f"l3f-ba{tag}-client", f"l3f-ba{tag}-router")
    made: list[str] = []
    try:
        for ns in (topo.client, topo.router):
            netns_mod.create(ns)
            made.append(ns)
        _sysctl(topo.router, "net.ipv4.ip_forward", "1")
        # L4 hashing: one client's connections spread over the members.
        _sysctl(topo.router, "net.ipv4.fib_multipath_hash_policy", "1")
        rc, cc = f"l3fba{tag}c", f"l3fba{tag}x"
        _ip(topo.router, "link", "add", rc, "type", "veth", "peer", "name", cc, "netns", topo.client)  # fmt: skip
        _ip(topo.router, "addr", "add", f"{CLIENT_GATEWAY}/30", "dev", rc)
        _ip(topo.router, "link", "set", rc, "up")
        _ip(topo.client, "addr", "add", f"{CLIENT_ADDRESS}/30", "dev", cc)
        _ip(topo.client, "link", "set", cc, "up")
        for address in (RESILIENT_ADDRESS, MULTIPATH_ADDRESS):
            _ip(topo.client, "route", "add", f"{address}/32", "via", CLIENT_GATEWAY)
        for i in range(members):
            name = f"m{i + 1}"
            ns = f"l3f-ba{tag}-{name}"
            netns_mod.create(ns)
            made.append(ns)
            topo.members[name] = ns
            router_addr, member_addr = _member_link(i)
            rif, mif = topo.router_if(name), f"l3fba{tag}{name}v"
            _ip(topo.router, "link", "add", rif, "type", "veth", "peer", "name", mif, "netns", ns)
            _ip(topo.router, "addr", "add", f"{router_addr}/30", "dev", rif)
            _ip(topo.router, "link", "set", rif, "up")
            _ip(ns, "addr", "add", f"{member_addr}/30", "dev", mif)
            _ip(ns, "link", "set", mif, "up")
            for address in (RESILIENT_ADDRESS, MULTIPATH_ADDRESS):
                _ip(ns, "addr", "add", f"{address}/32", "dev", "lo")
            # Replies go back to the client through the router, and nowhere else.
            _ip(ns, "route", "add", f"{CLIENT_ADDRESS}/32", "via", router_addr)
        yield topo
    finally:
        for ns in reversed(made):
            netns_mod.delete(ns)


def set_multipath(topo: Topology, address: str, members: list[str]) -> None:
    """A plain kernel multipath route (hash-threshold) to ``address`` over ``members``."""
    hops: list[str] = []
    for gateway, ifname in topo.gateways(members):
        hops += ["nexthop", "via", gateway, "dev", ifname]
    _ip(topo.router, "route", "replace", f"{address}/32", *hops)


def anycast_desired(topo: Topology, address: str, members: list[str]) -> dict[str, list[Any]]:
    """``ResilientRoutes.converge`` input for ``address`` over ``members``, weight 1 each."""
    return {f"{address}/32": [(gw, ifname, 1) for gw, ifname in topo.gateways(members)]}


def member_servers(topo: Topology, addresses: tuple[str, ...]) -> MemberServers:
    """A "who are you" listener on each of ``addresses`` in every member namespace."""
    return MemberServers(
        Listen(name, ns, address, PORT)
        for name, ns in topo.members.items()
        for address in addresses
    )


def moved_share(before: list[str | None], after: list[str | None], left: str) -> tuple[int, int]:
    """(flows on surviving members, how many of them changed member) between two asks."""
    surviving = [(b, a) for b, a in zip(before, after, strict=True) if b is not None and b != left]
    return len(surviving), sum(1 for b, a in surviving if a != b)


@dataclass
class Context:
    """What every part gets: its options and a tag for the names of what it creates."""

    connections: int
    members: int
    buckets: int
    tries: int
    tag: str


def rehash(ctx: Context) -> Result:
    """Part (b): surviving flows moved when one member leaves, resilient against multipath."""
    _raise_fd_limit(4 * ctx.connections + 256)
    with contextlib.ExitStack() as stack:
        topo = stack.enter_context(topology(ctx.members, ctx.tag))
        names = list(topo.members)
        params = ResilientParams(buckets=ctx.buckets)
        routes = stack.enter_context(ResilientRoutes(topo.router, params=params))
        routes.converge(anycast_desired(topo, RESILIENT_ADDRESS, names))
        set_multipath(topo, MULTIPATH_ADDRESS, names)
        stack.enter_context(member_servers(topo, (RESILIENT_ADDRESS, MULTIPATH_ADDRESS)))
        flows: dict[str, list[Flow]] = {}
        for address in (RESILIENT_ADDRESS, MULTIPATH_ADDRESS):
            flows[address] = open_flows(topo.client, address, ctx.connections)
            stack.callback(close_flows, flows[address])
        before = {a: [ask(s) for s in socks] for a, socks in flows.items()}
        for address, answers in before.items():
            unanswered = answers.count(None)
            if unanswered:
                raise RuntimeError(f"{unanswered} connections to {address} got no first answer")
        left, staying = names[-1], names[:-1]
        start = time.perf_counter()
        routes.converge(anycast_desired(topo, RESILIENT_ADDRESS, staying))
        converge_s = time.perf_counter() - start
        set_multipath(topo, MULTIPATH_ADDRESS, staying)
        after = {a: [ask(s) for s in socks] for a, socks in flows.items()}
    res_total, res_moved = moved_share(before[RESILIENT_ADDRESS], after[RESILIENT_ADDRESS], left)
    mp_total, mp_moved = moved_share(before[MULTIPATH_ADDRESS], after[MULTIPATH_ADDRESS], left)
    result: Result = {
        "connections": ctx.connections,
        "members": ctx.members,
        "buckets": ctx.buckets,
        "moved_pct_resilient": round(100.0 * res_moved / max(res_total, 1), 2),
        "moved_pct_multipath": round(100.0 * mp_moved / max(mp_total, 1), 2),
        "surviving_flows_resilient": res_total,
        "surviving_flows_multipath": mp_total,
        "member_remove_converge_s": round(converge_s, 4),
    }
    for name in names:
        result[f"share_pct_{name}"] = round(
            100.0 * before[RESILIENT_ADDRESS].count(name) / ctx.connections, 1
        )
    return result


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def failover(ctx: Context) -> Result:
    """Part (a): member and host failover times in a lab (see ``anycast_failover``)."""
    return anycast_failover.run(ctx.tries, ctx.tag)


PARTS: dict[str, Callable[[Context], Result]] = {"failover": failover, "rehash": rehash}


def run(options: dict[str, str]) -> Result:
    """Run the selected parts (default: all) and merge their results."""
    reader = OptionReader("anycast", options, {"connections", "members", "buckets", "tries"})
    require_root("anycast")
    ctx = Context(
        connections=reader.integer("connections", 300, 10, 5000),
        members=reader.integer("members", 4, 2, 9),
        buckets=reader.integer("buckets", 128, 8, 4096),
        tries=reader.integer("tries", 10, 1, 50),
        tag=secrets.token_hex(2),
    )
    return run_parts("anycast", options, PARTS, ctx)
