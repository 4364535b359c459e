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

Member = dict[str, Any]


class GroupMembers:
    """Group id -> its member port ids and their addresses."""

    def __init__(self) -> None:
        self._ports: dict[str, frozenset[str]] = {}
        self._addresses: dict[str, frozenset[str]] = {}

    @classmethod
    def of(cls, members: Mapping[str, Member]) -> GroupMembers:
        index = cls()
        ports: dict[str, set[str]] = {}
        for port_id, member in members.items():
            for group_id in member["security_groups"]:
                ports.setdefault(group_id, set()).add(port_id)
        for group_id, ids in ports.items():
            index._set(members, group_id, ids)
        return index

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
        ``members`` already holds ``new``. Costs the size of the groups involved."""
        before = set(old["security_groups"]) if old else set()
        after = set(new["security_groups"]) if new else set()
        for group_id in before | after:
            ids = set(self._ports.get(group_id, ()))
            if group_id in after:
                ids.add(port_id)
            else:
                ids.discard(port_id)
            self._set(members, group_id, ids)

    def copy(self) -> GroupMembers:
        twin = GroupMembers()
        twin._ports = dict(self._ports)
        twin._addresses = dict(self._addresses)
        return twin

    def _set(self, members: Mapping[str, Member], group_id: str, ids: set[str]) -> None:
        if not ids:
            self._ports.pop(group_id, None)
            self._addresses.pop(group_id, None)
            return
        self._ports[group_id] = frozenset(ids)
        self._addresses[group_id] = frozenset(a for p in ids for a in members[p]["addresses"])
