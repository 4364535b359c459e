"""Small transactions for the security-group table: what differs, and only that.

``transaction(rendered, current)`` compares the desired objects (sg_render)
with ``current``: the kernel's table read back (``parse_listing`` of
``nft -j list table``) in a full pass, or ``listing_of`` the last applied
state in an incremental one. It returns one ``nft -f`` script:

- the whole table replaced atomically if there is none, a base chain or map
  is missing, or a chain pair that stays would move between its tap set and
  the verdict maps (``table``; ``delete table``; the table: never a half
  state);
- else ``flush chain`` + its rules for each chain whose rule count or digest
  differs (a hand-deleted rule shows in the count; a base chain when a
  dedicated pair comes or goes), ``add chain`` / ``delete chain`` for ports'
  pairs and groups that come and go, ``add``/``delete element`` for
  memberships (set elements) and for ports (in their pair's tap set or the
  verdict maps, sg_render.place), ``add set`` / ``delete set`` for the tap
  sets of pairs that come and go.

Nothing changed: an empty script (zero statements).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from l3fabric.dataplane.sg_render import (
    BASE_CHAINS,
    FAMILY,
    MAP_IN,
    MAP_OUT,
    TABLE,
    TAP_SET,
    Rendered,
    pair_chain,
    place,
    set_decl,
    table_text,
    tap_set,
)
from l3fabric.layered import Layered

_DIGEST = re.compile(r"sg sha256:([0-9a-f]{16})")
_TAP_SET = re.compile(rf"^{TAP_SET}(in|out)-([0-9a-f]{{20}})$")
_T = f"{FAMILY} {TABLE}"
T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True)
class SgListing:
    """The table as the kernel holds it: (rule count, digest) per chain, sets, verdicts, pairs.

    ``maps`` and ``dedicated`` as in ``Rendered`` (a tap in its pair's tap set
    is read as ``goto`` that pair); ``conflict``: a tap in two places (by hand).
    """

    chains: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    sets: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)
    maps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    dedicated: tuple[str, ...] = ()
    conflict: bool = False


@dataclass(frozen=True)
class Transaction:
    """One ``nft -f`` script; ``narrowed``: something may admit less now (prune conntrack)."""

    script: str = ""
    full: bool = False
    narrowed: bool = False
    chains: tuple[str, ...] = ()  # chains written (new, rewritten), for the record

    @property
    def statements(self) -> int:
        """Lines of the script (a full table counts every line of it)."""
        return len(self.script.splitlines())

    @property
    def size(self) -> int:
        """Bytes handed to nft."""
        return len(self.script.encode())


@dataclass(frozen=True)
class Changed:
    """What may differ from the last applied table: chains, sets, taps (verdict-map keys)."""

    chains: frozenset[str] = frozenset()
    sets: frozenset[str] = frozenset()
    taps: frozenset[str] = frozenset()


def _chain_state(rules: tuple[str, ...]) -> tuple[int, str | None]:
    found = _DIGEST.search(rules[-1]) if rules else None
    return len(rules), found.group(1) if found else None


def listing_of(rendered: Rendered, only: Changed | None = None) -> SgListing:
    """What the kernel holds once ``rendered`` is applied (``only``: just those objects)."""
    if only is not None:
        cut = _cut(rendered.chains, rendered.sets, rendered.maps, only)
        return listing_of(Rendered(*cut, rendered.dedicated))
    return SgListing(
        chains={name: _chain_state(rules) for name, rules in rendered.chains.items()},
        sets={name: (kind, frozenset(e)) for name, (kind, e) in rendered.sets.items()},
        maps={name: dict(entries.items()) for name, entries in rendered.maps.items()},
        dedicated=rendered.dedicated,
    )


def _cut(
    chains: Mapping[str, T],
    sets: Mapping[str, U],
    maps: Mapping[str, Mapping[str, str]],
    only: Changed,
) -> tuple[dict[str, T], dict[str, U], dict[str, dict[str, str]]]:
    """Chains, sets and maps cut down to the base chains and the objects in ``only``."""
    return (
        {n: chains[n] for n in (*BASE_CHAINS, *only.chains) if n in chains},
        {n: sets[n] for n in only.sets if n in sets},
        {m: {t: e[t] for t in only.taps if t in e} for m, e in maps.items()},
    )


def update(before: SgListing, rendered: Rendered, only: Changed) -> SgListing:
    """``before`` with the objects in ``only`` as ``rendered`` has them (the rest kept)."""
    fresh = listing_of(rendered, only)
    chains, sets = dict(before.chains), dict(before.sets)
    for name in only.chains:
        chains.pop(name, None)
    for name in only.sets:
        sets.pop(name, None)
    chains.update(fresh.chains)
    sets.update(fresh.sets)
    maps = {}
    for name, entries in before.maps.items():
        # An entry per tap: the next version shares the last (l3fabric/layered.py).
        draft = Layered.of(entries).edit()
        for tap in only.taps:
            draft.pop(tap, None)
        draft.update(fresh.maps.get(name, {}))
        maps[name] = draft.done()
    return SgListing(chains, sets, maps, fresh.dedicated)


def _element(value: object) -> str:
    if isinstance(value, str):
        return f"{value}/{128 if ':' in value else 32}"
    if isinstance(value, dict) and "prefix" in value:
        return f"{value['prefix']['addr']}/{value['prefix']['len']}"
    if isinstance(value, dict) and "elem" in value:
        return _element(value["elem"].get("val"))
    return json.dumps(value)  # a range: never ours, so it differs from every wanted element


def _verdict(value: object) -> str:
    if isinstance(value, dict) and len(value) == 1:
        ((word, arg),) = value.items()
        if isinstance(arg, dict) and "target" in arg:
            return f"{word} {arg['target']}"
        return str(word)
    return json.dumps(value)


def parse_listing(text: str) -> SgListing:
    """``nft -j list table inet l3fabric-sg`` output -> SgListing."""
    chains: dict[str, list[object]] = {}
    digests: dict[str, str] = {}
    sets: dict[str, tuple[str, frozenset[str]]] = {}
    maps: dict[str, dict[str, str]] = {}
    tap_sets: dict[str, list[str]] = {}
    for item in json.loads(text).get("nftables", []):
        if "chain" in item:
            chains.setdefault(item["chain"]["name"], [])
        elif "rule" in item:
            rule = item["rule"]
            chains.setdefault(rule["chain"], []).append(rule)
            found = _DIGEST.search(rule.get("comment", ""))
            if found:
                digests[rule["chain"]] = found.group(1)
        elif "map" in item:
            entries = item["map"].get("elem", [])
            maps[item["map"]["name"]] = {str(k): _verdict(v) for k, v in entries}
        elif "set" in item and item["set"]["name"].startswith(TAP_SET):
            tap_sets[item["set"]["name"]] = [str(e) for e in item["set"].get("elem", [])]
        elif "set" in item:
            got = item["set"]
            elements = frozenset(_element(e) for e in got.get("elem", []))
            sets[got["name"]] = (str(got.get("type")), elements)
    keys, conflict = _read_tap_sets(tap_sets, maps)
    return SgListing(
        chains={name: (len(rules), digests.get(name)) for name, rules in chains.items()},
        sets=sets,
        maps=maps,
        dedicated=keys,
        conflict=conflict,
    )


def _read_tap_sets(
    tap_sets: Mapping[str, list[str]], maps: dict[str, dict[str, str]]
) -> tuple[tuple[str, ...], bool]:
    """Fold the pairs' tap sets into ``maps`` as ``goto`` verdicts; the pairs and any conflict.

    A conflict (a tap twice, a pair with one tap set of two, a stranger's
    set): the table is replaced.
    """
    keys = sorted({found.group(2) for found in map(_TAP_SET.match, tap_sets) if found})
    conflict = len(tap_sets) != 2 * len(keys) or any(not _TAP_SET.match(n) for n in tap_sets)
    for vmap in (MAP_IN, MAP_OUT):
        entries = maps.setdefault(vmap, {})
        for key in keys:
            verdict = f"goto {pair_chain(vmap, key)}"
            for tap in tap_sets.get(tap_set(vmap, key), ()):
                conflict = conflict or tap in entries
                entries[tap] = verdict
    return tuple(keys), conflict


def full_script(rendered: Rendered) -> str:
    """Replace the table in one transaction (declaring it first makes the delete valid)."""
    return f"table {_T}\ndelete table {_T}\n" + table_text(rendered)


def _needs_full(desired: SgListing, current: SgListing | None) -> bool:
    if current is None or current.conflict:
        return True
    if any(n not in current.chains for n in BASE_CHAINS):
        return True
    if any(name not in current.maps for name in (MAP_IN, MAP_OUT)):
        return True
    # A pair that exists on both sides (or on neither: an incremental pass did
    # not touch it) but is dedicated on one only: its taps would all move.
    for key in set(desired.dedicated) ^ set(current.dedicated):
        chain = pair_chain(MAP_IN, key)
        if (chain in desired.chains) == (chain in current.chains):
            return True
    # A set of ours with another type (hand-made): replace rather than patch.
    return any(
        name in current.sets and current.sets[name][0] != kind
        for name, (kind, _) in desired.sets.items()
    )


def _elements(verb: str, name: str, items: list[str]) -> list[str]:
    return [f"{verb} element {_T} {name} {{ {', '.join(items)} }}"] if items else []


def _placed(
    verb: str,
    vmap: str,
    entries: list[tuple[str, str]],
    keys: tuple[str, ...],
    dropped: Collection[str] = (),
) -> list[str]:
    """``verb`` element lines for ``entries`` (tap, verdict) of ``vmap``, grouped where they live.

    ``dropped``: sets deleted whole later in the transaction (their elements go with them).
    """
    found: dict[str, list[str]] = {}
    for tap, verdict in entries:
        name, element = place(vmap, tap, verdict, keys)
        # A map's element is deleted by its key alone.
        found.setdefault(name, []).append(f'"{tap}"' if verb == "delete" else element)
    return [
        line
        for name in sorted(found.keys() - set(dropped))
        for line in _elements(verb, name, found[name])
    ]


def _add_set(name: str, kind: str) -> str:
    return f"add {set_decl(name, kind).replace('set ', f'set {_T} ', 1)}"


def _tap_sets(keys: set[str]) -> list[str]:
    return sorted(tap_set(vmap, key) for key in keys for vmap in (MAP_IN, MAP_OUT))


def transaction(
    rendered: Rendered, current: SgListing | None, only: Changed | None = None
) -> Transaction:
    """The script that turns ``current`` into ``rendered`` (empty if it already is).

    ``only``: the objects that may differ (an incremental pass; the base
    chains are always compared); None: everything.
    """
    desired = listing_of(rendered, only)
    if only is not None and current is not None:
        cut = _cut(current.chains, current.sets, current.maps, only)
        current = SgListing(*cut, current.dedicated, current.conflict)
    if _needs_full(desired, current):
        return Transaction(full_script(rendered), full=True, narrowed=True)
    assert current is not None
    lines: list[str] = []
    narrowed = False
    new_keys, gone_keys = (
        set(desired.dedicated) - set(current.dedicated),
        set(current.dedicated) - set(desired.dedicated),
    )
    lines += [_add_set(name, "ifname") for name in _tap_sets(new_keys)]
    for name in sorted(desired.sets.keys() - current.sets.keys()):
        kind, elements = rendered.sets[name]
        lines.append(_add_set(name, kind))
        lines += _elements("add", name, list(elements))
    new_chains = sorted(desired.chains.keys() - current.chains.keys())
    lines += [f"add chain {_T} {name}" for name in new_chains]
    for name in sorted(desired.sets.keys() & current.sets.keys()):
        want, have = desired.sets[name][1], current.sets[name][1]
        gone = sorted(have - want)
        narrowed = narrowed or bool(gone)
        lines += _elements("delete", name, gone)
        lines += _elements("add", name, [e for e in rendered.sets[name][1] if e not in have])
    written: list[str] = []
    for name in sorted(desired.chains):
        if current.chains.get(name) == desired.chains[name]:
            continue
        if name in current.chains:
            lines.append(f"flush chain {_T} {name}")
            narrowed = True
        lines += [f"add rule {_T} {name} {rule}" for rule in rendered.chains[name]]
        written.append(name)
    for vmap in (MAP_IN, MAP_OUT):
        want_map, have_map = desired.maps[vmap], current.maps[vmap]
        stale = sorted((t, v) for t, v in have_map.items() if want_map.get(t) != v)
        narrowed = narrowed or bool(stale)
        lines += _placed("delete", vmap, stale, current.dedicated, _tap_sets(gone_keys))
        fresh = [(t, v) for t, v in sorted(want_map.items()) if have_map.get(t) != v]
        lines += _placed("add", vmap, fresh, desired.dedicated)
    for name in sorted(current.chains.keys() - desired.chains.keys()):
        lines.append(f"delete chain {_T} {name}")
        narrowed = True
    for name in [*sorted(current.sets.keys() - desired.sets.keys()), *_tap_sets(gone_keys)]:
        lines.append(f"delete set {_T} {name}")
    for name in sorted(current.maps.keys() - desired.maps.keys()):
        lines.append(f"delete map {_T} {name}")
    script = "\n".join(lines) + "\n" if lines else ""
    return Transaction(script, narrowed=narrowed, chains=tuple(written))
