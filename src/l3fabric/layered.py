"""A read-only mapping whose next version shares it: what lets a one-port pass copy nothing big.

The desired state and the ``Observed`` of an incremental pass are the last
pass's with a few entries changed. Plain dicts made that a copy of every
per-port map (endpoints, routes, guard, taps, ... at 10,000 ports ~0.1 ms
each, plus freeing the old one) in every pass, to keep ``desired_state``
pure. A ``Layered`` is a flat ``base`` dict shared by every version made
from it, plus the few keys this version set (``top``) or removed
(``gone``); ``edit()`` starts a ``Draft`` of the next version, which copies
only those few. Once the changes reach an eighth of the base they are
folded into a new flat base: a change costs O(1), amortised.
"""

from __future__ import annotations

from collections.abc import (
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    MutableMapping,
    ValuesView,
)
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_MISSING: Any = object()
# Fold the changes into a new base once they are this share of it (or this many at least).
_FOLD_SHARE, _FOLD_MIN = 8, 64


class _Layers(Generic[K, V]):
    """The read side both share: this version's changes first, then the base."""

    __slots__ = ("_base", "_gone", "_top")
    _base: dict[K, V]
    _top: dict[K, V]
    _gone: set[K]

    def __getitem__(self, key: K) -> V:
        value = self._top.get(key, _MISSING)
        if value is not _MISSING:
            return value
        if key in self._gone:
            raise KeyError(key)
        return self._base[key]

    def get(self, key: K, default: Any = None) -> Any:
        value = self._top.get(key, _MISSING)
        if value is not _MISSING:
            return value
        if key in self._gone:
            return default
        return self._base.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._top or (key not in self._gone and key in self._base)


class Layered(_Layers[K, V], Mapping[K, V]):
    """An immutable mapping: a shared flat ``base`` with this version's own changes on top."""

    __slots__ = ("_size",)

    def __init__(
        self,
        base: Mapping[K, V] | Iterable[tuple[K, V]] = (),
        top: dict[K, V] | None = None,
        gone: set[K] | None = None,
    ) -> None:
        self._base = base if type(base) is dict else dict(base)
        self._top = top or {}
        self._gone = gone or set()
        # Keys in top are never in gone; a key in top may also be in base.
        self._size = (
            len(self._base)
            - len(self._gone)
            + sum(1 for k in self._top if k not in self._base or k in self._gone)
        )

    @classmethod
    def of(cls, mapping: Mapping[K, V]) -> Layered[K, V]:
        """``mapping`` itself if it is a ``Layered``, else a flat copy of it."""
        return mapping if isinstance(mapping, Layered) else cls(dict(mapping))

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[K]:
        if not self._top and not self._gone:
            return iter(self._base)
        return self._merged()

    def _merged(self) -> Iterator[K]:
        top, gone = self._top, self._gone
        for key in self._base:
            if key not in top and key not in gone:
                yield key
        yield from top

    # A version without changes of its own (a full pass's, or just folded) is
    # its base: its views are the base dict's, walked in C, not key by key
    # through __getitem__ (a full pass walks 10,000-entry maps a dozen times).
    # The base is never edited once a version holds it.

    def keys(self) -> KeysView[K]:
        return self._base.keys() if not self._top and not self._gone else KeysView(self)

    def values(self) -> ValuesView[V]:
        return self._base.values() if not self._top and not self._gone else ValuesView(self)

    def items(self) -> ItemsView[K, V]:
        return self._base.items() if not self._top and not self._gone else ItemsView(self)

    def __repr__(self) -> str:
        return f"Layered({dict(self.items())!r})"

    def edit(self) -> Draft[K, V]:
        """A mutable next version (copies only this version's changes)."""
        return Draft(self)


class Draft(_Layers[K, V], MutableMapping[K, V]):
    """The next version of a ``Layered`` while a pass computes it; ``done()`` freezes it."""

    __slots__ = ()

    def __init__(self, start: Layered[K, V]) -> None:
        self._base = start._base
        self._top = dict(start._top)
        self._gone = set(start._gone)

    def pop(self, key: K, default: Any = _MISSING) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise KeyError(key)
            return default
        del self[key]
        return value

    def __setitem__(self, key: K, value: V) -> None:
        self._top[key] = value
        self._gone.discard(key)

    def __delitem__(self, key: K) -> None:
        if key not in self:
            raise KeyError(key)
        self._top.pop(key, None)
        if key in self._base:
            self._gone.add(key)

    def __len__(self) -> int:
        return len(self.done())

    def __iter__(self) -> Iterator[K]:
        return iter(self.done())

    def done(self) -> Layered[K, V]:
        """The finished version: sharing the base, or on a new flat one if the changes grew."""
        top, gone, base = self._top, self._gone, self._base
        if len(top) + len(gone) > max(_FOLD_MIN, len(base) // _FOLD_SHARE):
            flat = {k: v for k, v in base.items() if k not in gone}
            flat.update(top)
            return Layered(flat)
        return Layered(base, dict(top), set(gone))


def finished(part: MutableMapping[K, V]) -> Layered[K, V]:
    """``part`` as an immutable mapping: a ``Draft``'s next version, a plain dict wrapped (not copied)."""
    return part.done() if isinstance(part, Draft) else Layered(part)
