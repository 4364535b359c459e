"""The store interface: an etcd-v3-shaped key/value store with JSON values.

Everything above this module speaks only these types. Each call maps one to
one onto etcd v3:

- ``get``/``range``           -> Range (a single key, or a prefix range)
- ``txn([...])``              -> Txn: one compare per op (create_revision == 0
                                 for Create, mod_revision == N for Update,
                                 guarded Delete and Compare), then all the
                                 puts/deletes; the whole transaction gets one
                                 revision (none if it only compares)
- ``watch(prefix, since)``    -> Watch with start_revision = since + 1
- ``compact(rev)``            -> Compact; a watch from before it raises
                                 ``CompactedError`` (etcd: ErrCompacted)
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

JSON = dict[str, Any]


class StoreError(Exception):
    """Base class of every error a store raises."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached, or did not answer in time; nothing is known to be written.

    A transaction that fails this way may or may not have been applied (its
    answer was lost); the caller retries or reports "try again later"."""


class KeyExistsError(StoreError):
    """A create found the key already present."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key already exists: {key}")
        self.key = key


class KeyNotFoundError(StoreError):
    """An update or delete found no such key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key not found: {key}")
        self.key = key


class RevisionMismatchError(StoreError):
    """An update or delete was guarded by a mod_revision that is no longer current."""

    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(f"{key}: expected mod_revision {expected}, found {actual}")
        self.key = key
        self.expected = expected
        self.actual = actual


class CompactedError(StoreError):
    """A watch asked for history that has been compacted away: relist, then watch again."""

    def __init__(self, since: int, compacted: int) -> None:
        super().__init__(f"revision {since} is compacted (history starts after {compacted})")
        self.since = since
        self.compacted = compacted


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key as etcd reports it."""

    key: str
    value: JSON
    create_revision: int
    mod_revision: int
    version: int


@dataclass(frozen=True, slots=True)
class Event:
    """One change: ``put`` carries the new value, ``delete`` the last one."""

    type: Literal["put", "delete"]
    key: str
    revision: int
    value: JSON | None
    prev_value: JSON | None


@dataclass(frozen=True, slots=True)
class Create:
    """Create ``key`` only if it does not exist (etcd: compare create_revision == 0)."""

    key: str
    value: JSON


@dataclass(frozen=True, slots=True)
class Update:
    """Replace ``key`` only if its mod_revision is still ``mod_revision``."""

    key: str
    value: JSON
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Put:
    """Write ``key`` unconditionally."""

    key: str
    value: JSON


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete ``key``; it must exist, and if ``mod_revision`` is set it must match."""

    key: str
    mod_revision: int | None = None


@dataclass(frozen=True, slots=True)
class Compare:
    """Write nothing, but fail the transaction (RevisionMismatchError) unless
    ``key``'s mod_revision is still ``mod_revision``; an absent key's is 0.
    That is etcd's compare on a key the transaction does not write.

    This is how a transaction depends on a key it does not change (a port
    create on its network, a subnet delete on the network's allocations)."""

    key: str
    mod_revision: int


Op = Create | Update | Put | Delete | Compare


def prefix_end(prefix: str) -> str:
    """The first key after every key that starts with ``prefix`` (etcd's range_end)."""
    if not prefix:
        return "\U0010ffff"
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class Store(abc.ABC):
    """A transactional key/value store with a global revision and a change history."""

    @abc.abstractmethod
    def get(self, key: str) -> KeyValue | None:
        """The current value of ``key``, or None."""

    def get_many(self, keys: Sequence[str]) -> dict[str, KeyValue]:
        """The current values of those of ``keys`` that exist (etcd: one request
        for many; not one snapshot, each key as of its read)."""
        found = {}
        for key in keys:
            kv = self.get(key)
            if kv is not None:
                found[key] = kv
        return found

    @abc.abstractmethod
    def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key under ``prefix`` in key order, and the revision it was read at."""

    @abc.abstractmethod
    def revision(self) -> int:
        """The store's current revision (0 for an empty store)."""

    @abc.abstractmethod
    def txn(self, ops: Sequence[Op]) -> int:
        """Apply every op or none; returns the new revision.

        Raises KeyExistsError, KeyNotFoundError or RevisionMismatchError for the
        first op whose condition fails; nothing is written then. A transaction
        of Compares only writes nothing and returns the current revision.
        """

    @abc.abstractmethod
    def watch(self, prefix: str, since: int, timeout: float) -> tuple[list[Event], int]:
        """Events under ``prefix`` with revision > ``since``, oldest first.

        Waits up to ``timeout`` seconds for the first one. Returns the events and
        the revision the caller has seen up to (resume from it). Raises
        CompactedError if ``since`` is older than the kept history.
        """

    @abc.abstractmethod
    def compact(self, revision: int) -> None:
        """Forget the history up to and including ``revision``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store's resources."""

    def leases(self) -> Leases | None:
        """Keys that live as long as a lease is kept alive (etcd), or None (SQLite)."""
        return None

    # Conveniences: each is a one-op transaction.

    def create(self, key: str, value: JSON) -> int:
        return self.txn([Create(key, value)])

    def update(self, key: str, value: JSON, mod_revision: int) -> int:
        return self.txn([Update(key, value, mod_revision)])

    def put(self, key: str, value: JSON) -> int:
        return self.txn([Put(key, value)])

    def delete(self, key: str, mod_revision: int | None = None) -> int:
        return self.txn([Delete(key, mod_revision)])


class Leases(Protocol):
    """Keys bound to a lease with a TTL: etcd deletes them when it is not kept alive.

    Many keys share one lease (a controller's agents: one keepalive for all of
    them). A keepalive is no store write (no revision, no watch event);
    attaching and detaching keys write, and the lease's expiry deletes its keys.
    """

    def grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds, with no key yet (kept alive by the caller)."""

    def attach(self, values: Mapping[str, JSON], lease: int) -> None:
        """Write each key with its value under ``lease``, whatever lease it had
        (a few writes for many keys)."""

    def detach(self, keys: Sequence[str], lease: int) -> None:
        """Delete each of ``keys`` that is still under ``lease`` (not one that
        another lease has taken since)."""

    def keepalive(self, leases: Sequence[int]) -> dict[int, int]:
        """Keep each lease alive (one round trip for all); its TTL now, <= 0 if it expired."""

    def release(self, key: str) -> None:
        """Delete ``key`` whatever its lease (the other keys of that lease stay)."""

    def held(self, prefix: str) -> dict[str, JSON]:
        """Every key under ``prefix`` and its value (those whose lease lives)."""
