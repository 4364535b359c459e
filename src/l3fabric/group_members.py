"""Remote-group membership as an agent needs it: group id -> the addresses of
its member ports, kept up to date per watch event.

A rule with ``remote_group_id`` matches the addresses of every port in that
group (fixed IPs and allowed address pairs, on every host). The watch sends
one slim ``member`` record per port (``service/watch.py`` ``member_record``);
this index turns them into each group's address set, so a reconcile pass
reads a group's set without scanning every member. The sets are frozensets,
replaced (never edited) on change, so a copy of the index shares them.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from l3fabric.refcount import acquire, release

Member = dict[str, Any]


class GroupMembers:
    """Group id -> its member port ids and their addresses.

    A member event costs what it changes: each group's addresses are counted
    (two ports may share one, e.g. an address pair), so a port joining or
    leaving adjusts its own addresses' counts and the group's frozenset is
    made again in C from the old one, not from every member in Python (at
    10,000 members in one group that was 20-90 ms of the watch's thread,
    holding the interpreter, per new port).
    """

    def __init__(self) -> None:
        self._ports: dict[str, frozenset[str]] = {}
        self._addresses: dict[str, frozenset[str]] = {}
        # group id -> address -> how many of its member records hold it; None
        # in a copy until it is changed itself (then counted from ``members``).
        self._counts: dict[str, dict[str, int]] | None = {}

    @classmethod
    def of(cls, members: Mapping[str, Member]) -> GroupMembers:
        index = cls()
        index._count(members)
        return index

    def _count(self, members: Mapping[str, Member]) -> None:
        ports: dict[str, set[str]] = {}
        counts: dict[str, dict[str, int]] = {}
        for port_id, member in members.items():
            for group_id in member["security_groups"]:
                ports.setdefault(group_id, set()).add(port_id)
                held = counts.setdefault(group_id, {})
                for address in member["addresses"]:
                    held[address] = held.get(address, 0) + 1
        self._ports = {g: frozenset(ids) for g, ids in ports.items()}
        self._addresses = {g: frozenset(held) for g, held in counts.items()}
        self._counts = counts

    def addresses(self, group_id: str) -> frozenset[str]:
        return self._addresses.get(group_id, frozenset())

    def by_group(self) -> Mapping[str, frozenset[str]]:
        """Every group with members -> their addresses (a read-only view)."""
        return MappingProxyType(self._addresses)

    def changed(
        self,
        members: Mapping[str, Member],
        port_id: str,
        old: Member | None,
        new: Member | None,
    ) -> None:
        """Port ``port_id``'s record went from ``old`` to ``new`` (None: none);
        ``members`` already holds ``new``. Costs the addresses that change (and
        a C-level copy of the groups' sets)."""
        if self._counts is None:  # a copy: counted once, from the records as they are now
            self._count(members)
            return
        before = set(old["security_groups"]) if old else set()
        after = set(new["security_groups"]) if new else set()
        for group_id in before | after:
            held = self._counts.setdefault(group_id, {})
            gone = [a for a in old["addresses"] if release(held, a)] if group_id in before else []
            fresh = [a for a in new["addresses"] if acquire(held, a)] if group_id in after else []
            ids = self._ports.get(group_id, frozenset())
            ids = ids | {port_id} if group_id in after else ids - {port_id}
            if not ids:
                self._ports.pop(group_id, None)
                self._addresses.pop(group_id, None)
                self._counts.pop(group_id, None)
                continue
            self._ports[group_id] = ids
            if gone or fresh or group_id not in self._addresses:
                kept = self._addresses.get(group_id, frozenset()).difference(gone)
                self._addresses[group_id] = kept.union(fresh)

    def copy(self, counted: bool = False) -> GroupMembers:
        """A twin; ``counted``: with a copy of the counts (C-level dict copies),
        else it counts again from the records at its first change."""
        twin = GroupMembers()
        twin._ports = dict(self._ports)
        twin._addresses = dict(self._addresses)
        if counted and self._counts is not None:
            twin._counts = {group: dict(held) for group, held in self._counts.items()}
        else:
            twin._counts = None  # the counts stay this index's own
        return twin
