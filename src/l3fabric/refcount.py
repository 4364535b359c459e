"""Counting the users of shared things: a chain many ports use, an address several records hold."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def acquire(counts: dict[K, int], key: K) -> bool:
    """Count one more user of ``key``; True if it is the first."""
    counts[key] = counts.get(key, 0) + 1
    return counts[key] == 1


def release(counts: dict[K, int], key: K) -> bool:
    """Count one user of ``key`` less; True if it was the last (``key`` is then gone)."""
    counts[key] -= 1
    if counts[key]:
        return False
    del counts[key]
    return True
