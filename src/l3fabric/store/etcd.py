"""The store on an etcd v3 cluster, through etcd's gRPC gateway (JSON over HTTP) with etcd3gw.

Mapping (see store/base.py): a store revision is etcd's revision minus one,
because an empty etcd cluster is at revision 1 and an empty store at 0. Each
``txn`` is one etcd Txn: a compare per guarded op, all writes on success, and
a range of every key it names on failure, so the error says which op failed
and why, from one consistent read.

Watches: one etcd watch per process over the whole key space feeds the
recent history into memory (store/etcd_history.py); ``watch`` reads the
current revision, then waits there until the feed has it and has an event
under the prefix, or the timeout. A watch from before that history gets an
etcd watch of its own (start_revision = since + 1). Either way every revision
of a cluster the store owns carries an event, so a watch knows when it has
replayed all history up to the revision current when it started, and never
reports a revision it has not seen. Run one etcd cluster per deployment.

Failover: requests go to one endpoint until it fails, then to the next. A
read is retried on every endpoint; a transaction only when its connection was
refused (it cannot have been applied): a lost answer is StoreUnavailableError,
since the write may or may not have happened.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlparse

import requests
import urllib3
from etcd3gw.client import Etcd3Client
from etcd3gw.exceptions import ConnectionFailedError, ConnectionTimeoutError, Etcd3Exception

from l3fabric.store.base import (
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
    StoreError,
    StoreUnavailableError,
    Update,
)
from l3fabric.store.etcd_codec import (
    ALL,
    BASE,
    b64,
    event,
    from_etcd,
    key_value,
    range_end,
    stream_socket,
    to_etcd,
    watch_request,
)
from l3fabric.store.etcd_history import History
from l3fabric.store.etcd_leases import TXN_OPS, EtcdLeases

# Seconds to connect to a member, and to wait for a unary answer. etcd answers
# "no leader" or "request timed out" within about this when it cannot commit.
CONNECT_TIMEOUT_S = 1.0
REQUEST_TIMEOUT_S = 5.0
# How long a watch may wait for history older than its start (etcd replays it
# to a watch of its own every 100 ms) before it returns what it has.
_CATCH_UP_S = 3.0
# A quiet history feed reconnects after this; a hung member cannot hold it longer.
_FEED_IDLE_S = 30.0
_PAGE = 1000


def parse_endpoints(url: str) -> list[tuple[str, int]]:
    """``etcd://h1:p1,h2:p2`` -> [(h1, p1), (h2, p2)]; ValueError that says what is wrong."""
    parsed = urlparse(url)
    if parsed.scheme != "etcd" or not parsed.netloc or parsed.path not in ("", "/"):
        raise ValueError(f"{url!r}: write etcd://HOST:PORT[,HOST:PORT...]")
    endpoints = []
    for part in parsed.netloc.split(","):
        host, sep, port = part.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{url!r}: {part!r} is not HOST:PORT (write etcd://HOST:PORT,...)")
        endpoints.append((host, int(port)))
    return endpoints


def _refused(exc: BaseException) -> bool:
    """True when the request cannot have reached etcd (connection refused or never made)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(
            seen,
            urllib3.exceptions.NewConnectionError
            | urllib3.exceptions.ConnectTimeoutError
            | requests.exceptions.ConnectTimeout
            | ConnectionRefusedError,
        ):
            return True
        seen = seen.__cause__ or seen.__context__
        if isinstance(seen, urllib3.exceptions.MaxRetryError):
            seen = seen.reason
    return False


class EtcdStore(Store):
    """A Store on the etcd v3 cluster whose client endpoints are ``endpoints``.

    ``history``: how many revisions etcd keeps for watchers, as on SQLite; a
    write whose revision is a multiple of ``history // 10`` compacts the
    older ones (etcd's database otherwise grows until its space quota stops
    every write).
    """

    def __init__(self, endpoints: Sequence[tuple[str, int]], history: int = 100_000) -> None:
        if not endpoints:
            raise ValueError("an etcd store needs at least one endpoint")
        self._keep = history
        self._clients = [
            Etcd3Client(host, port, api_path="/v3/", timeout=(CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S))
            for host, port in endpoints
        ]
        for client in self._clients:
            # Each thread's request, and each watch stream, holds a connection while it
            # runs: a pool of 256, so a busy controller reuses them instead of reconnecting.
            adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=256)
            client.session.mount("http://", adapter)
            # The endpoints are the cluster's own: no proxy or ~/.netrc from the
            # environment, whose look-ups (two stat calls per request) were 9 % of
            # a busy controller's etcd request CPU (py-spy).
            client.session.trust_env = False
        self._current = 0
        self._lock = threading.Lock()
        self._feed: History | None = None  # started by the first watch
        self._observed = 0  # the newest etcd revision any answer carried
        self._leases = EtcdLeases(
            self._post,
            lambda: [(c.host, c.port) for _, c in self._order()],
            self.range,
            REQUEST_TIMEOUT_S,
        )

    # Transport -------------------------------------------------------------

    def _order(self) -> Iterator[tuple[int, Etcd3Client]]:
        """Every endpoint once, the one that worked last first."""
        start = self._current
        for offset in range(len(self._clients)):
            index = (start + offset) % len(self._clients)
            yield index, self._clients[index]

    def _post(self, path: str, body: dict[str, Any], *, write: bool = False) -> dict[str, Any]:
        failures = []
        for index, client in self._order():
            try:
                reply = client.post(client.get_url(path), json=body)
            except (ConnectionFailedError, ConnectionTimeoutError) as exc:
                failures.append(f"{client.host}:{client.port}: {_short(exc)}")
                if write and not _refused(exc):
                    raise StoreUnavailableError(
                        f"etcd did not confirm the write ({failures[-1]}); it may or may not"
                        " have been applied"
                    ) from None
                continue
            except Etcd3Exception as exc:
                raise StoreError(f"etcd refused {path}: {_short(exc)}") from None
            self._current = index
            revision = int((reply.get("header") or {}).get("revision") or 0)
            if revision > self._observed:
                self._observed = revision  # a race here only leaves it a little lower
            return reply
        raise StoreUnavailableError("etcd is unreachable: " + "; ".join(failures))

    # Reads -----------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        reply = self._post("/kv/range", {"key": b64(key)})
        kvs = reply.get("kvs") or []
        return key_value(kvs[0]) if kvs else None

    def get_many(self, keys: Sequence[str]) -> dict[str, KeyValue]:
        found = {}
        for start in range(0, len(keys), TXN_OPS):
            reads = [{"request_range": {"key": b64(key)}} for key in keys[start : start + TXN_OPS]]
            reply = self._post("/kv/txn", {"success": reads})
            for answer in reply.get("responses") or []:
                for kv in answer.get("response_range", {}).get("kvs") or []:
                    value = key_value(kv)
                    found[value.key] = value
        return found

    def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        # Pages of _PAGE keys, every page read at the first page's revision:
        # one consistent snapshot however large.
        start, end = (b64(prefix), range_end(prefix)) if prefix else (ALL, ALL)
        kvs: list[KeyValue] = []
        at = 0
        while True:
            body: dict[str, Any] = {"key": start, "range_end": end, "limit": _PAGE}
            if at:
                body["revision"] = at
            reply = self._post("/kv/range", body)
            at = at or int(reply["header"]["revision"])
            page = [key_value(raw) for raw in reply.get("kvs") or []]
            kvs.extend(page)
            if not reply.get("more") or not page:
                return kvs, from_etcd(at)
            start = b64(page[-1].key + "\0")

    def revision(self) -> int:
        reply = self._post("/kv/range", {"key": ALL, "count_only": True, "limit": 1})
        return from_etcd(reply["header"]["revision"])

    # Writes ----------------------------------------------------------------

    def txn(self, ops: Sequence[Op]) -> int:
        keys = list(dict.fromkeys(op.key for op in ops))
        body = {
            "compare": [c for op in ops if (c := _compare(op)) is not None],
            "success": [r for op in ops if (r := _request(op)) is not None],
            # On failure, read every key once, at one revision, to say why.
            "failure": [{"request_range": {"key": b64(key)}} for key in keys],
        }
        reply = self._post("/kv/txn", body, write=True)
        if reply.get("succeeded"):
            revision = from_etcd(reply["header"]["revision"])
            if self._keep and revision % max(1, self._keep // 10) == 0:
                self.compact(revision - self._keep)
            return revision
        current: dict[str, KeyValue] = {}
        for response in reply.get("responses") or []:
            for raw in response.get("response_range", {}).get("kvs") or []:
                kv = key_value(raw)
                current[kv.key] = kv
        raise _why(ops, current)

    def compact(self, revision: int) -> None:
        if self._feed is not None:
            self._feed.trim(revision)
        target = min(to_etcd(revision), self.revision() + BASE)
        if target <= BASE:
            return
        try:
            self._post("/kv/compaction", {"revision": target, "physical": False})
        except StoreError as exc:
            if "compacted" not in str(exc):  # already compacted past it: nothing to do
                raise

    # History ---------------------------------------------------------------

    def watch(self, prefix: str, since: int, timeout: float) -> tuple[list[Event], int]:
        deadline = time.monotonic() + max(0.0, timeout)
        # Every revision this process has seen in an answer (its own writes, the
        # snapshot a caller watches from) is in the answer: read-your-writes, as on
        # SQLite, without asking etcd once per long poll.
        head = from_etcd(self._observed) if self._observed else self.revision()
        found = self._history(head).read(
            prefix, since, head, deadline, time.monotonic() + _CATCH_UP_S
        )
        if found is not None:
            return found
        return self._watch_once(prefix, since, deadline)

    def _history(self, head: int) -> History:
        with self._lock:
            if self._feed is None:
                self._feed = History(self._stream, start=head)
            return self._feed

    def _stream(self, start_revision: int) -> requests.Response:
        return self._open_watch(watch_request(start_revision), _FEED_IDLE_S)

    def _watch_once(self, prefix: str, since: int, deadline: float) -> tuple[list[Event], int]:
        """A watch of its own, for history older than the kept one."""
        # etcd keeps the compaction revision itself, the store does not: a
        # watch from just before it must fail too. Starting one revision early
        # makes etcd report the compaction (and its revision) exactly then.
        start = since + BASE + (0 if self._compacted(since) else 1)
        reply = self._open_watch(watch_request(start), _CATCH_UP_S + REQUEST_TIMEOUT_S)
        try:
            return _read_watch(reply, prefix, since, deadline)
        finally:
            reply.close()

    def _compacted(self, since: int) -> bool:
        """Whether etcd has compacted store revision ``since`` away (a read at it fails)."""
        try:
            self._post("/kv/range", {"key": ALL, "count_only": True, "revision": since + BASE})
        except StoreError as exc:
            if "compacted" in str(exc):
                return True
            if "future revision" in str(exc):
                return False
            raise
        return False

    def _open_watch(self, body: dict[str, Any], read_timeout: float) -> requests.Response:
        failures = []
        for index, client in self._order():
            try:
                reply = client.session.post(
                    client.get_url("/watch"),
                    json=body,
                    stream=True,
                    timeout=(CONNECT_TIMEOUT_S, read_timeout),
                )
            except requests.RequestException as exc:
                failures.append(f"{client.host}:{client.port}: {_short(exc)}")
                continue
            if reply.status_code != 200:
                failures.append(f"{client.host}:{client.port}: HTTP {reply.status_code}")
                reply.close()
                continue
            self._current = index
            return reply
        raise StoreUnavailableError("etcd is unreachable: " + "; ".join(failures))

    def leases(self) -> EtcdLeases:
        return self._leases

    def close(self) -> None:
        if self._feed is not None:
            self._feed.close()
        self._leases.close()
        for client in self._clients:
            client.session.close()


def _read_watch(
    reply: requests.Response, prefix: str, since: int, deadline: float
) -> tuple[list[Event], int]:
    """Read one watch stream until it has events and has caught up, or time is up.

    ``seen`` (etcd's numbering) only ever moves to a revision whose events
    have all arrived: the start revision when the watch was created in sync,
    else the last event's revision.
    """
    events: list[Event] = []
    seen = since + BASE
    head = None  # etcd's revision when the watch was created
    sock = stream_socket(reply)
    lines = reply.iter_lines(chunk_size=None)
    while True:
        caught_up = head is not None and seen >= head
        now = time.monotonic()
        if caught_up and (events or now >= deadline):
            break
        limit = deadline if caught_up else max(deadline, now + _CATCH_UP_S)
        if head is not None and now >= limit:
            break
        if sock is not None:
            sock.settimeout(max(0.01, limit - now))
        try:
            line = next(lines, None)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
            break  # timed out, or the member went away: return what is certain
        if line is None:
            break
        if not line:
            continue
        message = json.loads(line)
        if "error" in message:
            raise StoreUnavailableError(f"etcd watch failed: {message['error']}")
        result = message.get("result", {})
        if int(result.get("compact_revision") or 0):
            raise CompactedError(since, from_etcd(result["compact_revision"]))
        if result.get("created"):
            head = int(result["header"]["revision"])
            seen = max(seen, min(head, since + BASE))
            continue
        for raw in result.get("events") or []:
            change = event(raw)
            seen = max(seen, change.revision + BASE)
            if change.key.startswith(prefix):
                events.append(change)
    return events, from_etcd(seen)


def _compare(op: Op) -> dict[str, Any] | None:
    key = b64(op.key)
    if isinstance(op, Create):
        return {"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": 0}
    if isinstance(op, Update | Compare):
        return {
            "key": key,
            "target": "MOD",
            "result": "EQUAL",
            "mod_revision": to_etcd(op.mod_revision),
        }
    if isinstance(op, Delete):
        if op.mod_revision is not None:
            return {
                "key": key,
                "target": "MOD",
                "result": "EQUAL",
                "mod_revision": to_etcd(op.mod_revision),
            }
        return {"key": key, "target": "CREATE", "result": "GREATER", "create_revision": 0}
    return None  # Put: unconditional


def _request(op: Op) -> dict[str, Any] | None:
    if isinstance(op, Create | Update | Put):
        value = json.dumps(op.value, separators=(",", ":"))
        return {"request_put": {"key": b64(op.key), "value": b64(value)}}
    if isinstance(op, Delete):
        return {"request_delete_range": {"key": b64(op.key)}}
    return None  # Compare writes nothing


def _why(ops: Sequence[Op], current: dict[str, KeyValue]) -> StoreError:
    """The error of the first op whose condition fails on ``current`` (as SQLite reports it)."""
    for op in ops:
        kv = current.get(op.key)
        actual = kv.mod_revision if kv else 0
        if isinstance(op, Compare):
            if actual != op.mod_revision:
                return RevisionMismatchError(op.key, op.mod_revision, actual)
        elif isinstance(op, Create):
            if kv is not None:
                return KeyExistsError(op.key)
        elif isinstance(op, Update | Delete):
            if kv is None:
                return KeyNotFoundError(op.key)
            if op.mod_revision is not None and actual != op.mod_revision:
                return RevisionMismatchError(op.key, op.mod_revision, actual)
    return StoreError("etcd refused the transaction, yet every condition holds now")


def _short(exc: BaseException) -> str:
    """One line of what went wrong: etcd's own message, or the socket error under requests'."""
    text = str(getattr(exc, "detail_text", None) or exc)
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return str(json.loads(text)["error"])[:200]  # an error etcd answered
    text = " ".join(text.split())
    found = re.search(
        r"\[Errno -?\d+\] [^'\")]+|(?:Read|Connect) timed out|RemoteDisconnected", text
    )
    return found.group(0).rstrip(".") if found else text[:200] or type(exc).__name__
