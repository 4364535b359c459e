"""Per-event timestamps, to find where a watch event's latency goes (off by default).

With ``L3F_EVENT_TRACE=PREFIX`` in the environment, every process that calls
``mark`` appends ``STAGE ID TIME`` lines (``time.monotonic``, the system-wide
CLOCK_MONOTONIC, so the lines of several processes compare) to
``PREFIX.PID``; ``l3fabric bench fanout`` joins them by port id. Without it
``mark`` is one attribute test. Stages: ``commit`` (the create's transaction
returned), ``feed`` (etcd's watch stream delivered it), ``read`` (the watch
hub's reader got it from the store), ``publish`` (decoded, its host woken),
``answer`` (its host's long poll has its answer), ``seen`` (the simulated
agent read it), ``created`` (the benchmark got the 201).
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from typing import TextIO

PREFIX = os.environ.get("L3F_EVENT_TRACE", "")
enabled = bool(PREFIX)
_lock = threading.Lock()
_file: TextIO | None = None


def mark(stage: str, ident: str) -> None:
    """Record that ``ident`` (a port id) reached ``stage`` now (when tracing)."""
    if not enabled:
        return
    _line(stage, ident)


def _line(stage: str, ident: str) -> None:
    global _file
    line = f"{stage} {ident} {time.monotonic():.6f}\n"
    with _lock:
        if _file is None:
            _file = open(f"{PREFIX}.{os.getpid()}", "a", buffering=1)  # noqa: SIM115
        _file.write(line)


def watch_process() -> None:
    """Also stamp each garbage collection (``gcN MS END``) and each stall of the
    running event loop over ``STALL_S`` (``stall MS END``), when tracing."""
    if not enabled:
        return
    started: list[float] = []

    def collected(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.monotonic(), time.thread_time()]
        elif started:
            took, cpu = time.monotonic() - started[0], time.thread_time() - started[1]
            if info["generation"] or took >= STALL_S / 5:
                what = f"{1000 * took:.2f},{1000 * cpu:.2f},{info['collected']}"
                _line(f"gc{info['generation']}", what)

    gc.callbacks.append(collected)
    _tasks.append(asyncio.get_running_loop().create_task(_stalls()))


# A loop that wakes this much later than asked counts as stalled.
STALL_S = 0.01
_TICK_S = 0.005
_tasks: list[asyncio.Task[None]] = []


async def _stalls() -> None:
    schedstat = f"/proc/self/task/{threading.get_native_id()}/schedstat"
    while True:
        before, own, process = time.monotonic(), time.thread_time(), time.process_time()
        queued = _queued(schedstat)
        await asyncio.sleep(_TICK_S)
        late = time.monotonic() - before - _TICK_S
        if late >= STALL_S:
            # And what this thread did meanwhile: ran (its CPU), waited for a CPU
            # (the machine's contention), or neither (blocked: the GIL, a lock);
            # and the CPU of the whole process (other threads holding the GIL).
            own, process = time.thread_time() - own, time.process_time() - process
            queued = _queued(schedstat) - queued
            _line("stall", ",".join(f"{1000 * v:.2f}" for v in (late, own, queued, process)))


def _queued(schedstat: str) -> float:
    """Seconds the thread has waited for a CPU while runnable (Linux schedstat)."""
    with open(schedstat) as stat:
        return int(stat.read().split()[1]) / 1e9


def port_id(key: str) -> str:
    """The id of a port's store key (the last path element)."""
    return key.rsplit("/", 1)[-1]
