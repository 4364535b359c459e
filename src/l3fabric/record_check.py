"""What an agent admits into its cache: records whose addresses are in canonical form.

The API stores every address and prefix in canonical form, but a store is
long-lived: records written before it did (an IPv6 zone ID such as
``fe80::1%lo as 64999; ...``, spaces, odd notations) may still be there.
An agent must never render such a value into BIRD or nftables, and one bad
record must not stop it from converging the rest, so the watcher's cache
(``client.HostState``) passes every object through ``admit``: a record with
a non-canonical address (or a BGP neighbour the API refuses) is left out (as if it did not exist) and logged.
The fabric config is never left out; its bad ``route_reflectors`` are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from l3fabric.addresses import is_canonical_address, is_canonical_network, peer_address_text

log = logging.getLogger(__name__)

Check = Callable[[Any], bool]


def _optional(check: Check) -> Check:
    return lambda value: value is None or check(value)


def _address_or_network(value: Any) -> bool:
    if isinstance(value, str) and "/" in value:
        return is_canonical_network(value)
    return is_canonical_address(value)


def _peer_address(value: Any) -> bool:
    # What the API accepts as a BGP neighbour, in canonical form.
    try:
        return peer_address_text(value) == value
    except ValueError:
        return False


def _items(record: dict[str, Any], field: str) -> list[Any]:
    value = record.get(field)
    return value if isinstance(value, list) else []


def _sub(field: str, key: str, check: Check) -> Callable[[dict[str, Any]], Iterable[tuple]]:
    """(path, value, check) for ``record[field][i][key]`` of each item."""

    def values(record: dict[str, Any]) -> Iterable[tuple]:
        for i, item in enumerate(_items(record, field)):
            value = item.get(key) if isinstance(item, dict) else None
            yield f"{field}[{i}].{key}", value, check

    return values


def _each(field: str, check: Check) -> Callable[[dict[str, Any]], Iterable[tuple]]:
    """(path, value, check) for each item of the list ``record[field]``."""

    def values(record: dict[str, Any]) -> Iterable[tuple]:
        for i, value in enumerate(_items(record, field)):
            yield f"{field}[{i}]", value, check

    return values


def _one(field: str, check: Check) -> Callable[[dict[str, Any]], Iterable[tuple]]:
    return lambda record: [(field, record.get(field), check)]


def _inner(field: str, key: str, check: Check) -> Callable[[dict[str, Any]], Iterable[tuple]]:
    """(path, value, check) for ``record[field][key]`` when ``record[field]`` is an object."""

    def values(record: dict[str, Any]) -> Iterable[tuple]:
        inner = record.get(field)
        return [(f"{field}.{key}", inner.get(key), check)] if isinstance(inner, dict) else []

    return values


# Per kind of watch object: the address fields an agent renders or routes.
_FIELDS: dict[str, tuple[Callable[[dict[str, Any]], Iterable[tuple]], ...]] = {
    "port": (
        _sub("fixed_ips", "ip_address", is_canonical_address),
        _sub("allowed_address_pairs", "ip_address", _address_or_network),
    ),
    "host": (
        _one("router_id", is_canonical_address),
        _one("address", _peer_address),
        _sub("peers", "address", _peer_address),
        _sub("peers", "local", _optional(_peer_address)),
    ),
    "gateway": (
        _one("router_id", is_canonical_address),
        _each("fabric_addresses", _peer_address),
        _one("snat_address", _optional(is_canonical_address)),
        _one("snat_pool", _optional(is_canonical_network)),
        _inner("sync", "local", _peer_address),
        _inner("sync", "peer", _peer_address),
        _each("infrastructure", is_canonical_network),
        _sub("upstream", "address", _peer_address),
        _sub("upstream", "local", _optional(_peer_address)),
        _sub("fabric_peers", "address", _peer_address),
        _sub("fabric_peers", "local", _optional(_peer_address)),
    ),
    "subnet": (
        _one("cidr", is_canonical_network),
        _one("gateway_ip", _optional(is_canonical_address)),
    ),
    "anycast": (_one("address", is_canonical_address),),
    "security_group": (
        _sub("security_group_rules", "remote_ip_prefix", _optional(is_canonical_network)),
    ),
    "member": (_each("addresses", _address_or_network),),
}


def problem(kind: str, record: dict[str, Any]) -> str | None:
    """Why an agent must not use ``record`` (a watch object of ``kind``), or None."""
    for fields in _FIELDS.get(kind, ()):
        for path, value, check in fields(record):
            if not check(value):
                return f"{path} {value!r} is not an address in canonical form"
    return None


def admit(kind: str, record: dict[str, Any] | None) -> dict[str, Any] | None:
    """``record`` if an agent may use it; None (logged) if it holds a bad address."""
    if record is None:
        return None
    reason = problem(kind, record)
    if reason is None:
        return record
    name = record.get("id") or record.get("name") or "?"
    log.error("ignoring %s %s from the controller: %s", kind, name, reason)
    return None


def admit_fabric(fabric: dict[str, Any]) -> dict[str, Any]:
    """The fabric config without route reflectors whose address is not canonical."""
    reflectors = _items(fabric, "route_reflectors")
    good = [a for a in reflectors if _peer_address(a)]
    if len(good) == len(reflectors):
        return fabric
    log.error(
        "ignoring route reflectors from the controller that are not canonical addresses: %s",
        [a for a in reflectors if a not in good],
    )
    return {**fabric, "route_reflectors": good}


# What changes when an agent reports a port's status, not what it must converge.
REPORTED = frozenset({"status", "revision_number", "updated_at"})


def material(port: dict[str, Any]) -> dict[str, Any]:
    """A port without what status reports change: two ports agents program alike compare equal."""
    return {k: v for k, v in port.items() if k not in REPORTED}
