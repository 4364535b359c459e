"""IPAM: which addresses a subnet may hand out, and claiming them without races.

Owns the pool arithmetic (Neutron's default allocation pools, validation of
requested pools) and the allocator that picks free addresses.

Correctness never depends on what the allocator believes: every allocated
address is one store key ``ipam_key(subnet, address)`` written with Create
(create-if-absent) in the same transaction as the port, so two writers can
never both win an address. The allocator only keeps a per-process *hint*
(a cursor into the pools and the addresses it knows are taken) so that the
common case is a single transaction with no reads. When a claim collides,
the caller reports it and the next pick re-reads the subnet's allocations.

Allocations and subnet/network deletes conflict in the store, not in a
read: every allocating transaction carries ``claim_guard`` (the network is
still what the writer read; touch the network's ``allocated_key``), and a
delete carries ``allocation_guard``, read before it looks for allocations.
"""

from __future__ import annotations

import ipaddress
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from l3fabric.keys import allocated_key, ipam_prefix
from l3fabric.store import Compare, Delete, KeyValue, Op, Put, Store

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# A pool is an inclusive range of addresses, as integers.
Pool = tuple[int, int]


def default_pools(network: IPNetwork, gateway: IPAddress | None) -> list[Pool]:
    """Neutron's default: the subnet minus its network address, the IPv4
    broadcast address and the gateway."""
    first = int(network.network_address)
    last = int(network.broadcast_address)
    if first == last:
        return [(first, last)]
    start = first + 1
    end = last - (1 if network.version == 4 else 0)
    if start >= end:
        return []
    pools = [(start, end)]
    if gateway is not None:
        pools = subtract(pools, int(gateway))
    return pools


def subtract(pools: list[Pool], address: int) -> list[Pool]:
    """``pools`` without ``address``."""
    out: list[Pool] = []
    for start, end in pools:
        if start <= address <= end:
            if start < address:
                out.append((start, address - 1))
            if address < end:
                out.append((address + 1, end))
        else:
            out.append((start, end))
    return out


def parse_pools(network: IPNetwork, pools: list[dict[str, str]]) -> list[Pool]:
    """Validate API allocation pools against ``network``; raises ValueError saying why."""
    parsed: list[Pool] = []
    for pool in pools:
        start = ipaddress.ip_address(pool["start"])
        end = ipaddress.ip_address(pool["end"])
        if start not in network or end not in network:
            raise ValueError(f"allocation pool {start}-{end} is not inside subnet {network}")
        if int(start) > int(end):
            raise ValueError(f"allocation pool {start}-{end}: start is after end")
        if network.version == 4 and network.prefixlen < 31:
            for a in (start, end):
                if a in (network.network_address, network.broadcast_address):
                    raise ValueError(
                        f"allocation pool {start}-{end} includes the network or broadcast"
                        f" address of {network}"
                    )
        parsed.append((int(start), int(end)))
    parsed.sort()
    for (_, end_a), (start_b, _) in itertools.pairwise(parsed):
        if start_b <= end_a:
            raise ValueError("allocation pools overlap each other")
    return parsed


def pools_to_api(pools: list[Pool], version: int) -> list[dict[str, str]]:
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return [{"start": str(make(start)), "end": str(make(end))} for start, end in pools]


def subnet_pools(subnet: dict[str, Any]) -> list[Pool]:
    """The pools of a stored subnet (its ``allocation_pools``) as integer ranges."""
    return sorted(
        (int(ipaddress.ip_address(p["start"])), int(ipaddress.ip_address(p["end"])))
        for p in subnet["allocation_pools"]
    )


def walk(pools: list[Pool], cursor: int) -> Iterator[int]:
    """Every pool address once, starting at ``cursor`` (or the next one after
    it) and wrapping around to the first pool."""
    before: list[Pool] = []
    for start, end in pools:
        if end < cursor:
            before.append((start, end))
            continue
        yield from range(max(start, cursor), end + 1)
        if start < cursor:
            before.append((start, cursor - 1))
    for start, end in before:
        yield from range(start, end + 1)


def claim_guard(network: KeyValue) -> list[Op]:
    """Ops for a transaction that allocates on ``network`` (as read): it fails
    if the network changed (a subnet was deleted), and it moves the network's
    allocation marker, so a delete that checked for allocations before fails."""
    network_id = network.value["id"]
    return [
        Compare(network.key, network.mod_revision),
        Put(allocated_key(network_id), {"network_id": network_id}),
    ]


def allocation_guard(store: Store, network_id: str, *, drop: bool = False) -> Op:
    """The op that makes a delete fail if anything was allocated on the network
    after this call: read it *before* looking for allocations. ``drop``
    deletes the marker too (the network itself goes)."""
    marker = store.get(allocated_key(network_id))
    if marker is None:
        return Compare(allocated_key(network_id), 0)
    if drop:
        return Delete(marker.key, marker.mod_revision)
    return Compare(marker.key, marker.mod_revision)


@dataclass
class _Hint:
    cursor: int = 0
    taken: set[int] = field(default_factory=set)
    stale: bool = True


class Allocator:
    """Picks candidate addresses; the store's Create decides who gets them.

    Thread-safe. One per process (per service); several processes sharing a
    store each keep their own hints and still never double-allocate.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._hints: dict[str, _Hint] = {}

    def pick(self, subnet: dict[str, Any], exclude: set[str] = frozenset()) -> str | None:
        """A free-looking address of ``subnet``'s pools not in ``exclude``, or
        None when the pools are full (checked against the store)."""
        pools = subnet_pools(subnet)
        if not pools:
            return None
        version = subnet["ip_version"]
        make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
        avoid = {int(make(a)) for a in exclude}
        with self._lock:
            hint = self._hints.setdefault(subnet["id"], _Hint(cursor=pools[0][0]))
            refreshed = hint.stale
            if refreshed:
                hint.taken = self._allocated(subnet["id"], make)
                hint.stale = False
            found = self._first_free(pools, hint, avoid)
            if found is None and not refreshed:
                # Our view may be out of date (releases by other processes):
                # re-read once before calling the pools full.
                hint.taken = self._allocated(subnet["id"], make)
                found = self._first_free(pools, hint, avoid)
            if found is None:
                return None
            # Taken at once, so concurrent picks in this process differ; if the
            # claim fails for another reason the next refresh forgets it.
            hint.cursor = found + 1
            hint.taken.add(found)
            return str(make(found))

    @staticmethod
    def _first_free(pools: list[Pool], hint: _Hint, avoid: set[int]) -> int | None:
        # Bounded: among len(taken) + len(avoid) + 1 addresses one is free,
        # and the walk visits each pool address at most once.
        for address in walk(pools, hint.cursor):
            if address not in hint.taken and address not in avoid:
                return address
        return None

    def _allocated(self, subnet_id: str, make: type) -> set[int]:
        kvs, _ = self._store.range(ipam_prefix(subnet_id))
        return {int(make(kv.value["ip_address"])) for kv in kvs}

    def collided(self, subnet_id: str, address: str) -> None:
        """Someone else holds ``address``: re-read the subnet before the next pick."""
        with self._lock:
            hint = self._hints.setdefault(subnet_id, _Hint())
            hint.taken.add(int(ipaddress.ip_address(address)))
            hint.stale = True

    def claimed(self, subnet_id: str, address: str) -> None:
        """``address`` is now ours (e.g. requested explicitly): skip it in picks."""
        with self._lock:
            hint = self._hints.get(subnet_id)
            if hint is not None:
                hint.taken.add(int(ipaddress.ip_address(address)))

    def released(self, subnet_id: str, address: str) -> None:
        """``address`` was given back: it may be picked again."""
        with self._lock:
            hint = self._hints.get(subnet_id)
            if hint is not None:
                hint.taken.discard(int(ipaddress.ip_address(address)))

    def forget(self, subnet_id: str) -> None:
        """The subnet is gone."""
        with self._lock:
            self._hints.pop(subnet_id, None)
