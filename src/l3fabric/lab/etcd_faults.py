"""Failures of the lab's etcd cluster (``store: etcd``), injected on purpose for tests.

The members run from the pid files ``etcd-1``, ``etcd-2``, ... in the order of
the store URL. A member is killed with SIGKILL (its data stays) and started
again with the command line it had (read from /proc before the kill), so it
rejoins the cluster on its data; ``etcd_down`` takes the whole cluster away
for a block and brings it back after, also when the block fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from l3fabric.lab.errors import LabError
from l3fabric.lab.processes import spawn
from l3fabric.lab.state import LabState
from l3fabric.pids import alive
from l3fabric.store.etcd_local import healthy, leader_index

RESTART_TIMEOUT_S = 20.0


def member_names(state: LabState) -> list[str]:
    """The lab processes of the etcd members (``etcd-1``, ...), in store URL order."""
    pids = state.pids()
    names = [f"etcd-{i}" for i in range(1, len(pids) + 1) if f"etcd-{i}" in pids]
    if not names:
        raise LabError(f"lab {state.dir.name} runs no etcd (store: etcd)")
    return names


def client_urls(state: LabState) -> list[str]:
    """``http://HOST:PORT`` of every member, from the lab's store URL."""
    url = state.store_url_file.read_text().strip()
    return [f"http://{endpoint}" for endpoint in url.removeprefix("etcd://").split(",")]


def leader(state: LabState) -> int:
    """The index (from 0) of the member that leads the lab's etcd now."""
    found = leader_index(client_urls(state))
    if found is None:
        raise LabError(f"no member of lab {state.dir.name}'s etcd leads")
    return found


def _argv_file(state: LabState, name: str) -> Path:
    return state.dir / "etcd" / f"{name}.argv"


def kill_member(state: LabState, index: int) -> None:
    """SIGKILL member ``index`` (from 0); ``restart_member`` brings it back on its data."""
    name = member_names(state)[index]
    pid = state.pids()[name]
    # Its command line, NUL-separated, as it started (the lab keeps no other record of it).
    _argv_file(state, name).write_bytes(Path(f"/proc/{pid}/cmdline").read_bytes())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def restart_member(state: LabState, index: int) -> None:
    """Start a killed member again with its old command line (not waiting for health)."""
    name = member_names(state)[index]
    argv = _argv_file(state, name).read_bytes().rstrip(b"\0").split(b"\0")
    spawn(state, name, [arg.decode() for arg in argv])


def wait_healthy(state: LabState, timeout: float = RESTART_TIMEOUT_S) -> float:
    """Wait until every member reports health; the seconds it took."""
    started = time.monotonic()
    pending = client_urls(state)
    while pending:
        pending = [url for url in pending if not healthy(url)]
        if pending and time.monotonic() - started > timeout:
            raise LabError(f"etcd members not healthy after {timeout:.0f} s: {pending}")
        if pending:
            time.sleep(0.05)
    return time.monotonic() - started


@contextlib.contextmanager
def etcd_down(state: LabState) -> Iterator[None]:
    """Every member killed for the block, then all started again (a quorum needs them
    together) and waited for."""
    indexes = range(len(member_names(state)))
    for index in indexes:
        kill_member(state, index)
    try:
        yield
    finally:
        for index in indexes:
            restart_member(state, index)
        wait_healthy(state)
