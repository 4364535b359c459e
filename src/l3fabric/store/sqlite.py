"""SQLite implementation of the store: one WAL-mode file, safe for several processes.

The global revision lives in ``meta``; every transaction bumps it once and
appends its changes to ``changes``, which is the watch history. Writers take
SQLite's write lock up front (BEGIN IMMEDIATE), so read-check-write inside a
transaction is atomic across threads and processes alike.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from l3fabric.store.base import (
    JSON,
    CompactedError,
    Compare,
    Create,
    Delete,
    Event,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    Op,
    Put,
    RevisionMismatchError,
    Store,
    Update,
    prefix_end,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 0), ('compacted', 0);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL,
    version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT,
    prev_value TEXT,
    PRIMARY KEY (revision, seq)
) WITHOUT ROWID;
"""

# How often a blocked watch looks for commits made by other processes.
_POLL_INTERVAL = 0.05


class SqliteStore(Store):
    """The embedded default store.

    ``history`` is how many revisions of change history are kept for watchers;
    older history is compacted automatically every ``history // 10`` revisions.
    """

    def __init__(self, path: str | Path, history: int = 100_000) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._history = history
        self._lock = threading.RLock()
        self._committed = threading.Condition(threading.Lock())
        self._db = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # Idempotent, so two processes opening a new file at once are both fine.
        self._db.executescript(_SCHEMA)

    # Reads -----------------------------------------------------------------

    def _meta(self, name: str) -> int:
        return self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()[0]

    def get(self, key: str) -> KeyValue | None:
        with self._lock:
            row = self._db.execute(
                "SELECT key, value, create_revision, mod_revision, version FROM kv WHERE key = ?",
                (key,),
            ).fetchone()
        return _kv(row) if row else None

    def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                rows = self._db.execute(
                    "SELECT key, value, create_revision, mod_revision, version FROM kv"
                    " WHERE key >= ? AND key < ? ORDER BY key",
                    (prefix, prefix_end(prefix)),
                ).fetchall()
                revision = self._meta("revision")
            finally:
                self._db.execute("COMMIT")
        return [_kv(row) for row in rows], revision

    def revision(self) -> int:
        with self._lock:
            return self._meta("revision")

    # Writes ----------------------------------------------------------------

    def txn(self, ops: Sequence[Op]) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                revision = self._meta("revision") + 1
                for seq, op in enumerate(ops):
                    self._apply(op, revision, seq)
                if all(isinstance(op, Compare) for op in ops):
                    # Nothing written: no new revision (etcd's read-only txn).
                    self._db.execute("ROLLBACK")
                    return revision - 1
                self._db.execute("UPDATE meta SET value = ? WHERE name = 'revision'", (revision,))
                if self._history and revision % max(1, self._history // 10) == 0:
                    self._compact_locked(revision - self._history)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        with self._committed:
            self._committed.notify_all()
        return revision

    def _apply(self, op: Op, revision: int, seq: int) -> None:
        row = self._db.execute(
            "SELECT value, create_revision, mod_revision, version FROM kv WHERE key = ?",
            (op.key,),
        ).fetchone()
        if isinstance(op, Compare):
            actual = row[2] if row else 0
            if actual != op.mod_revision:
                raise RevisionMismatchError(op.key, op.mod_revision, actual)
            return
        if isinstance(op, Create) and row is not None:
            raise KeyExistsError(op.key)
        if isinstance(op, Update | Delete) and row is None:
            raise KeyNotFoundError(op.key)
        expected = getattr(op, "mod_revision", None)
        if expected is not None and row[2] != expected:
            raise RevisionMismatchError(op.key, expected, row[2])
        prev_value = row[0] if row else None
        if isinstance(op, Delete):
            self._db.execute("DELETE FROM kv WHERE key = ?", (op.key,))
            self._record(revision, seq, "delete", op.key, None, prev_value)
            return
        assert isinstance(op, Create | Update | Put)
        value = json.dumps(op.value, separators=(",", ":"))
        create_revision = row[1] if row else revision
        version = row[3] + 1 if row else 1
        self._db.execute(
            "INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?, ?)",
            (op.key, value, create_revision, revision, version),
        )
        self._record(revision, seq, "put", op.key, value, prev_value)

    def _record(
        self, revision: int, seq: int, kind: str, key: str, value: str | None, prev: str | None
    ) -> None:
        self._db.execute(
            "INSERT INTO changes VALUES (?, ?, ?, ?, ?, ?)",
            (revision, seq, kind, key, value, prev),
        )

    # History ---------------------------------------------------------------

    def watch(self, prefix: str, since: int, timeout: float) -> tuple[list[Event], int]:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            events, seen = self._events_since(prefix, since)
            if events or time.monotonic() >= deadline:
                return events, seen
            # Woken at once by commits in this process; other processes' commits
            # are noticed by the poll interval.
            with self._committed:
                self._committed.wait(min(_POLL_INTERVAL, max(0.0, deadline - time.monotonic())))

    def _events_since(self, prefix: str, since: int) -> tuple[list[Event], int]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                compacted = self._meta("compacted")
                revision = self._meta("revision")
                if since < compacted:
                    raise CompactedError(since, compacted)
                rows = self._db.execute(
                    "SELECT type, key, revision, value, prev_value FROM changes"
                    " WHERE revision > ? AND key >= ? AND key < ? ORDER BY revision, seq",
                    (since, prefix, prefix_end(prefix)),
                ).fetchall()
            finally:
                self._db.execute("COMMIT")
        events = [
            Event(kind, key, rev, _load(value), _load(prev)) for kind, key, rev, value, prev in rows
        ]
        return events, max(revision, since)

    def compact(self, revision: int) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._compact_locked(revision)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _compact_locked(self, revision: int) -> None:
        if revision <= self._meta("compacted"):
            return
        self._db.execute("DELETE FROM changes WHERE revision <= ?", (revision,))
        self._db.execute("UPDATE meta SET value = ? WHERE name = 'compacted'", (revision,))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _load(text: str | None) -> JSON | None:
    return json.loads(text) if text is not None else None


def _kv(row: tuple) -> KeyValue:
    key, value, create_revision, mod_revision, version = row
    return KeyValue(key, json.loads(value), create_revision, mod_revision, version)
