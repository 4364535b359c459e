"""A 3-member etcd cluster under faults: kill -9 a member during writes and watches;
no acknowledged write lost, no change missed by the watcher."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from l3fabric.store import StoreUnavailableError, open_store
from l3fabric.store.etcd_local import LocalEtcd


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalEtcd]:
    with LocalEtcd(3, name="l3f-test-etcd3", election_ms=500) as etcd:
        yield etcd


class Writers:
    """Threads creating distinct keys until stopped; remember what etcd acknowledged."""

    def __init__(self, url: str, prefix: str, threads: int = 4) -> None:
        self.store = open_store(url)
        self.prefix = prefix
        self.acked: dict[str, int] = {}
        self.failed = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(t,)) for t in range(threads)]

    def _run(self, worker: int) -> None:
        for i in range(10_000):  # bounded; the test stops it within seconds
            if self.stop.is_set():
                return
            key = f"{self.prefix}{worker}/{i}"
            try:
                self.acked[key] = self.store.create(key, {"i": i})
            except StoreUnavailableError:
                self.failed += 1
                time.sleep(0.05)

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)
        self.store.close()

    def count(self) -> int:
        return len(self.acked)


class Watcher:
    """A long-polling reader (as the watch API does) of everything under ``prefix``."""

    def __init__(self, url: str, prefix: str) -> None:
        self.store = open_store(url)
        self.prefix = prefix
        self.seen = self.store.revision()
        self.keys: set[str] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                events, self.seen = self.store.watch(self.prefix, self.seen, 0.5)
            except StoreUnavailableError:
                time.sleep(0.1)
                continue
            self.keys.update(e.key for e in events)

    def caught_up(self, revision: int, timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while self.seen < revision and time.monotonic() < deadline:
            time.sleep(0.05)
        self.stop.set()
        self.thread.join(10)
        self.store.close()
        return self.seen >= revision


def _kill_during_writes(cluster: LocalEtcd, victim: int) -> tuple[int, int, int]:
    """Kill ``victim`` while writers run; (acked before, acked after the kill, failed)."""
    prefix = f"/w/{time.monotonic_ns()}/"
    watcher = Watcher(cluster.url, prefix)
    with Writers(cluster.url, prefix) as writers:
        time.sleep(0.7)
        before = writers.count()
        cluster.kill(victim)
        killed = time.monotonic()
        # Writes in flight to a killed leader wait for their timeout (5 s), then 503.
        while writers.count() < before + 50 and time.monotonic() - killed < 10:
            time.sleep(0.05)
        resumed = time.monotonic() - killed
        after = writers.count() - before
    check = open_store(cluster.url)
    kvs, revision = check.range(prefix)
    check.close()
    stored = {kv.key: kv.mod_revision for kv in kvs}
    lost = {k: rev for k, rev in writers.acked.items() if stored.get(k) != rev}
    assert lost == {}, f"{len(lost)} acknowledged writes lost"
    # The watcher, whose member may be the one killed, saw every change: no gap.
    assert watcher.caught_up(revision)
    assert set(stored) <= watcher.keys
    cluster.restart(victim)
    print(
        f"killed member {victim}: acked {before} before, {after} after (50 more within"
        f" {resumed:.2f} s), {writers.failed} failed"
    )
    return before, after, writers.failed


def test_killing_the_client_s_member_loses_nothing_and_writes_go_on(cluster: LocalEtcd) -> None:
    # Member 0 is the endpoint the store talks to first: it must fail over.
    before, after, _ = _kill_during_writes(cluster, 0)
    assert before > 0 and after >= 50


def test_killing_the_leader_loses_nothing_and_writes_go_on(cluster: LocalEtcd) -> None:
    before, after, _ = _kill_during_writes(cluster, cluster.leader())
    assert before > 0 and after >= 50
