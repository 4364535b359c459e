"""What benchmarks made of parts share: option parsing, running the parts, paired samples.

A benchmark checks its options with ``OptionReader`` and hands a context
to ``run_parts``, which runs the selected parts in order, merges their
results, and turns SIGTERM into an exception so that every part's cleanup
(``finally`` blocks removing namespaces and processes) runs. ``alternated``
takes the samples of two measurements to compare in turn.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

Result = dict[str, Any]
C = TypeVar("C")
T = TypeVar("T")


class OptionReader:
    """``--set KEY=VALUE`` options of benchmark ``bench``, checked against ``known``."""

    def __init__(self, bench: str, options: Mapping[str, str], known: set[str]) -> None:
        self.bench = bench
        self.options = options
        unknown = sorted(set(options) - known - {"parts"})
        if unknown:
            raise SystemExit(
                f"bench {bench}: unknown option(s) {unknown}; known: {sorted(known | {'parts'})}"
            )

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        raw = self.options.get(key, default)
        try:
            value = int(raw)
        except ValueError:
            raise SystemExit(f"bench {self.bench}: {key} must be an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise SystemExit(f"bench {self.bench}: {key} must be within {low}..{high}, got {value}")
        return value

    def names(self, key: str, default: str, known: tuple[str, ...]) -> list[str]:
        """A comma-separated list of names, each one of ``known``."""
        chosen = self.options.get(key, default).split(",")
        unknown = [name for name in chosen if name not in known]
        if unknown:
            raise SystemExit(f"bench {self.bench}: unknown {key} {unknown}; known: {list(known)}")
        return chosen


def require_root(bench: str) -> None:
    if os.geteuid() != 0:
        raise SystemExit(f"bench {bench} needs root (it creates network namespaces)")


def run_parts(
    bench: str,
    options: Mapping[str, str],
    parts: Mapping[str, Callable[[C], Result]],
    ctx: C,
) -> Result:
    """Run the parts named in ``options["parts"]`` (default: all) and merge their results."""
    names = options.get("parts", ",".join(parts)).split(",")
    unknown = [n for n in names if n not in parts]
    if unknown:
        raise SystemExit(f"bench {bench}: unknown part(s) {unknown}; known: {sorted(parts)}")

    def _terminate(signum: int, _frame: Any) -> None:
        # SIGTERM would otherwise end the process without running the finally
        # blocks that remove namespaces, BIRDs and controllers.
        raise SystemExit(f"bench {bench}: stopped by signal {signum}")

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    try:
        result: Result = {}
        for name in names:
            result.update(parts[name](ctx))
        return result
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def alternated(
    rounds: int, first: Callable[[], T], second: Callable[[], T]
) -> tuple[list[T], list[T]]:
    """``rounds`` samples of each of two measurements, taken in turn: first, second, first ...

    On this shared 2-core machine one sample swings with the other load by up
    to 2x; taken one after the other, a drift of that load would favour
    whichever measurement came first.
    """
    firsts: list[T] = []
    seconds: list[T] = []
    for _ in range(rounds):
        firsts.append(first())
        seconds.append(second())
    return firsts, seconds
