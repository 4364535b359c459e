"""Kernel sysctls of a network namespace: read first, write only what differs.

/proc/sys/net shows the namespace of the thread that opens the file, so a
named namespace is entered (this thread only) around the reads and writes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from l3fabric.dataplane import netns as netns_mod

# What a host (and any router of the fabric) needs, per namespace: a new
# namespace starts with forwarding off and L3-only multipath hashing, which
# would send every flow of an anycast address to the same member.
HOST_SYSCTLS: dict[str, str] = {
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
    "net.ipv4.fib_multipath_hash_policy": "1",
    "net.ipv6.fib_multipath_hash_policy": "1",
    # A multipath next hop whose link is down is skipped at once, not used
    # until BGP withdraws it (a gateway's links cut: docs/gateway.md).
    "net.ipv4.conf.all.ignore_routes_with_linkdown": "1",
    "net.ipv6.conf.all.ignore_routes_with_linkdown": "1",
}

_PART = re.compile(r"^[A-Za-z0-9_-]+$")


def proc_path(key: str) -> str:
    """``net.ipv4.conf.tap1.proxy_arp`` -> ``/proc/sys/net/ipv4/conf/tap1/proxy_arp``."""
    parts = key.split(".")
    if len(parts) < 2 or not all(_PART.match(p) for p in parts):
        raise ValueError(f"bad sysctl name {key!r}")
    return os.path.join("/proc/sys", *parts)


def _read(key: str) -> str:
    with open(proc_path(key)) as f:
        return f.read().strip()


def read(key: str, netns: str | None = None) -> str:
    """The current value of ``key`` (e.g. ``net.ipv4.ip_forward``)."""
    with netns_mod.entered(netns):
        return _read(key)


def ensure(settings: Mapping[str, str], netns: str | None = None) -> list[str]:
    """Set each key to its value where it differs; returns the keys that were written."""
    written: list[str] = []
    with netns_mod.entered(netns):
        for key, value in settings.items():
            try:
                current = _read(key)
            except FileNotFoundError:
                raise FileNotFoundError(f"no sysctl {key} (is the interface there?)") from None
            if current != str(value):
                with open(proc_path(key), "w") as f:
                    f.write(str(value))
                written.append(key)
    return written
