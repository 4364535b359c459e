"""Two ``l3fabric server`` processes on one real etcd agree on which hosts are up.

A host agent's heartbeat loop (``FabricClient`` with both controllers' URLs,
beating every ``heartbeat_interval_s`` like agent/loop.py) reports to the
first controller. Required: the second controller shows the host up; once
the heartbeats stop, both show it down within the lease's TTL (the grace,
two intervals) and a margin; and when the first controller is killed with
SIGKILL while the host beats, the host moves to the second and the second
never shows it down, not once in frequent reads over several TTLs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from l3fabric.client import ApiError, ControllerUnavailable, FabricClient
from l3fabric.store.etcd_local import ETCD_BINARY, LocalEtcd

from ..unit.test_server_process import servers

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not os.path.exists(ETCD_BINARY), reason=f"needs {ETCD_BINARY}"),
]

INTERVAL_S = 1.0  # heartbeat_interval_s: the grace and lease TTL are 2 s
GRACE_S = 2 * INTERVAL_S
# etcd checks for expired leases every 0.5 s and deletes their keys through
# raft; the lease was renewed up to one gather after the last heartbeat.
MARGIN_S = 1.5
HOST = "compute-1"


@pytest.fixture
def controllers() -> Iterator[list[tuple[subprocess.Popen, str]]]:
    with LocalEtcd(1, name="l3f-test-liveness") as etcd, servers(etcd.url, 2) as started:
        with FabricClient(started[0][1]) as api:
            api.set_fabric({"heartbeat_interval_s": INTERVAL_S})
            api.register_host(HOST, router_id="10.0.0.11", address="10.0.0.11")
        yield started


class Agent(threading.Thread):
    """A host agent's heartbeat loop (agent/loop.py ``_report``, every interval), nothing else."""

    def __init__(self, urls: list[str]) -> None:
        super().__init__(daemon=True)
        self.client = FabricClient(urls, timeout=2)
        self.stop = threading.Event()
        self.reported_to: list[str] = []  # the controller of each acknowledged heartbeat
        self.failed = 0
        self.last_sent = time.monotonic()  # when the last heartbeat left (monotonic)

    def run(self) -> None:
        while not self.stop.is_set():
            url = self.client.api_url
            self.last_sent = time.monotonic()
            try:
                self.client.heartbeat(HOST, agent={"controller": url})
                self.reported_to.append(self.client.api_url)
            except (ApiError, ControllerUnavailable):
                self.failed += 1
            self.stop.wait(INTERVAL_S)

    def halt(self) -> float:
        """Stop beating; returns when the last heartbeat was sent (monotonic): up to an
        interval before this call, which a host's liveness counts from."""
        self.stop.set()
        self.join(5)
        return self.last_sent


def status(url: str) -> str:
    with FabricClient(url, timeout=2) as api:
        return api.get_host(HOST)["status"]


def listed(url: str) -> str:
    with FabricClient(url, timeout=2) as api:
        return {h["name"]: h["status"] for h in api.list_hosts()}[HOST]


def test_every_controller_shows_the_same_liveness(
    controllers: list[tuple[subprocess.Popen, str]],
) -> None:
    (_, first), (_, second) = controllers
    agent = Agent([first, second])
    agent.start()
    try:
        time.sleep(3 * INTERVAL_S)  # well past the grace: only a shared liveness shows it
        assert set(agent.reported_to) == {first}
        assert [status(first), status(second), listed(second)] == ["up"] * 3
    finally:
        stopped = agent.halt()
    # Up for at least the grace after the last heartbeat, then down on both
    # within 2 TTLs (the renewer keeps a lease alive a TTL after the last heartbeat).
    time.sleep(max(0.0, stopped + GRACE_S - 0.7 - time.monotonic()))
    assert [status(first), status(second)] == ["up"] * 2
    down_at = {}
    while len(down_at) < 2 and time.monotonic() < stopped + 2 * GRACE_S + MARGIN_S + 2:
        for url in (first, second):
            if url not in down_at and status(url) == "down":
                down_at[url] = time.monotonic() - stopped
        time.sleep(0.05)
    print(f"\ndown after the last heartbeat: {down_at}")
    assert set(down_at) == {first, second}, down_at
    assert max(down_at.values()) < 2 * GRACE_S + MARGIN_S, down_at


# When the kill comes in the heartbeat cycle (seconds after a heartbeat).
@pytest.mark.parametrize("phase", [0.02, 0.37, 0.71])
def test_a_controller_killed_does_not_make_its_hosts_look_down(
    controllers: list[tuple[subprocess.Popen, str]], phase: float
) -> None:
    (killed, first), (_, second) = controllers
    agent = Agent([first, second])
    agent.start()
    shown: list[str] = []
    try:
        time.sleep(2 * INTERVAL_S)
        beats = len(agent.reported_to)
        while len(agent.reported_to) == beats:
            time.sleep(0.005)
        time.sleep(phase)
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(5)
        deadline = time.monotonic() + 3 * GRACE_S
        while time.monotonic() < deadline:
            shown.append(status(second))
            shown.append(listed(second))
            time.sleep(0.05)
    finally:
        agent.halt()
    print(f"\n{len(shown)} reads of the survivor after the kill; reports to {agent.reported_to}")
    assert agent.reported_to[-1] == second and agent.failed == 0
    assert set(shown) == {"up"}, shown.count("down")
