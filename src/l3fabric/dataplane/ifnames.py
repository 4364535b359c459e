"""Interface names: the checks every module applies, and name <-> index lookups.

Linux keeps a name in ``IFNAMSIZ`` (16) bytes with its NUL: at most 15
characters. Which characters are accepted depends on where the name goes:

- ``plausible``: what a route or nexthop may name (the kernel decides the rest);
- ``ruleset_safe``: quoted into an nftables ruleset;
- ``sysctl_safe``: a part of a sysctl key (``net.ipv4.conf.NAME.proxy_arp``:
  no dot);
- ``is_tap``: one of our endpoint taps (``tap`` + up to 12 characters).
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Iterable

from l3fabric.dataplane import netns as netns_mod

IFNAMSIZ = 16  # linux/if.h, with the terminating NUL
MAX_LEN = IFNAMSIZ - 1

_RULESET = re.compile(rf"^[A-Za-z0-9_.-]{{1,{MAX_LEN}}}$")
_SYSCTL = re.compile(rf"^[A-Za-z0-9_-]{{1,{MAX_LEN}}}$")
_TAP = re.compile(rf"^tap[A-Za-z0-9_-]{{1,{MAX_LEN - 3}}}$")


def plausible(name: object) -> bool:
    """A non-empty string of at most 15 characters, no ``/``, no surrounding space."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_LEN
        and "/" not in name
        and name.strip() == name
    )


def ruleset_safe(name: str) -> bool:
    """Safe to quote into an nftables ruleset: letters, digits, ``_.-``."""
    return bool(_RULESET.match(name))


def sysctl_safe(name: str) -> bool:
    """Usable as a part of a sysctl key: letters, digits, ``_-``."""
    return bool(_SYSCTL.match(name))


def is_tap(name: str) -> bool:
    """One of our endpoint taps by its name."""
    return bool(_TAP.match(name))


def ifindexes(names: Iterable[str], netns: str | None = None) -> dict[str, int]:
    """The index of each of ``names`` that exists in ``netns`` (None: the current namespace).

    ``if_nametoindex`` is one ioctl per name, microseconds each; a pyroute2
    lookup costs ~1 ms, which for 100 taps alone would equal ``ip -batch``'s
    time for 10,000 routes.
    """
    found: dict[str, int] = {}
    with netns_mod.entered(netns):
        for name in names:
            with contextlib.suppress(OSError):
                found[name] = socket.if_nametoindex(name)
    return found


def interface_names(indexes: Iterable[int], netns: str | None = None) -> dict[int, str]:
    """The name of each of ``indexes`` that exists in ``netns`` (None: the current namespace)."""
    found: dict[int, str] = {}
    with netns_mod.entered(netns):
        for index in indexes:
            with contextlib.suppress(OSError):
                found[index] = socket.if_indextoname(index)
    return found
