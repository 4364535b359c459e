"""etcd's gRPC-gateway JSON <-> the store's types: base64 keys and values, revisions."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
from typing import Any

import requests

from l3fabric.store.base import Event, KeyValue

# etcd's revision of an empty cluster; store revision = etcd revision - BASE.
BASE = 1
# The whole key space: etcd's range from "\0" to "\0".
ALL = base64.b64encode(b"\0").decode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(text: str | None) -> str:
    return base64.b64decode(text or "").decode()


def range_end(prefix: str) -> str:
    """etcd's range_end for a prefix: the prefix with its last byte incremented."""
    raw = bytearray(prefix.encode())
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return ALL
    raw[-1] += 1
    return base64.b64encode(bytes(raw)).decode()


def to_etcd(revision: int) -> int:
    """A store mod_revision as etcd's; 0 (absent) stays 0."""
    return revision + BASE if revision > 0 else 0


def from_etcd(revision: str | int | None) -> int:
    value = int(revision or 0)
    return value - BASE if value > 0 else 0


def key_value(raw: dict[str, Any]) -> KeyValue:
    return KeyValue(
        unb64(raw["key"]),
        json.loads(unb64(raw.get("value"))),
        from_etcd(raw.get("create_revision")),
        from_etcd(raw.get("mod_revision")),
        int(raw.get("version", 0)),
    )


def event(raw: dict[str, Any]) -> Event:
    """One watch event (the watch asks for prev_kv)."""
    kv = raw["kv"]
    prev = raw.get("prev_kv")
    deleted = raw.get("type") == "DELETE"
    return Event(
        "delete" if deleted else "put",
        unb64(kv["key"]),
        from_etcd(kv.get("mod_revision")),
        None if deleted else json.loads(unb64(kv.get("value"))),
        json.loads(unb64(prev.get("value"))) if prev else None,
    )


def watch_request(start_revision: int) -> dict[str, Any]:
    """A watch of the whole key space from etcd revision ``start_revision``, old values too."""
    return {
        "create_request": {
            "key": ALL,
            "range_end": ALL,
            "start_revision": start_revision,
            "prev_kv": True,
        }
    }


def stream_socket(reply: requests.Response) -> socket.socket | None:
    """A streamed response's socket: to bound each read, or to cut the stream from elsewhere."""
    with contextlib.suppress(AttributeError):
        return reply.raw._connection.sock  # urllib3 2: the connection behind the response
    return None
