"""Key/value stores behind the controller, opened from a URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

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

__all__ = [
    "CompactedError",
    "Compare",
    "Create",
    "Delete",
    "Event",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyValue",
    "Op",
    "Put",
    "RevisionMismatchError",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "Update",
    "default_store_url",
    "open_store",
]


def default_store_url() -> str:
    """``sqlite:///`` on a file in the user's data directory."""
    from platformdirs import user_data_dir

    return f"sqlite:///{Path(user_data_dir('l3fabric')) / 'l3fabric.db'}"


def open_store(url: str) -> Store:
    """Open the store a URL names: ``sqlite:///ABS/PATH.db``, ``sqlite:///:memory:``,
    ``etcd://HOST:PORT[,HOST:PORT...]`` (the members of one etcd v3 cluster)."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = parsed.path
        if parsed.netloc:
            raise ValueError(f"{url!r}: write sqlite:///ABSOLUTE/PATH (three slashes)")
        if not path or path == "/":
            raise ValueError(f"{url!r}: no database file given")
        from l3fabric.store.sqlite import SqliteStore

        return SqliteStore(":memory:" if path == "/:memory:" else path)
    if parsed.scheme == "etcd":
        from l3fabric.store.etcd import EtcdStore, parse_endpoints

        return EtcdStore(parse_endpoints(url))
    raise ValueError(f"{url!r}: unknown store; expected sqlite:///PATH or etcd://HOST:PORT")
