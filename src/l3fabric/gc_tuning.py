"""The garbage collector's settings for processes that hold thousands of connections.

With CPython's default thresholds (700, 10, 10), a controller serving 1,000
hosts (2,000 connections, 1,000 long polls in flight, 500 heartbeats a
second) ran a full collection every 1-3 s, each walking every object of the
process (~340,000) and finding nothing to free (measured: 35 full
collections in 115 s, 0.1-1.3 s each on a loaded 2-core machine, and the
watch events waiting behind them made the p99 of the fan-out). Its objects
die by reference counting; what reaches the old generation is mostly the
long polls' and the reports' objects, which live a few seconds. So: what
exists once the process has started (modules, classes, the app) is frozen
out of the collections, and the thresholds make young collections less
frequent (short-lived objects die before them, not in the old generation)
and full ones rare (minutes apart at that load).
"""

from __future__ import annotations

import gc

# Allocations between young collections (CPython's default is 700).
YOUNG = 20_000
# Young collections per middle one, middle ones per full one (defaults 10, 10).
MIDDLE = 50
OLD = 100


def tune_for_server() -> None:
    """Freeze the objects that exist now and set the thresholds (module docstring)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, OLD)
