"""The store contract on a real etcd (Debian's etcd-server on loopback), and etcd's own cases."""

from __future__ import annotations

import threading
import time
import warnings

import httpx
import pytest

from l3fabric.api.app import create_app
from l3fabric.loopback import free_port
from l3fabric.store import CompactedError, StoreUnavailableError, open_store
from l3fabric.store.etcd import EtcdStore, parse_endpoints
from l3fabric.store.etcd_local import LocalEtcd

from .api_helpers import error, make
from .store_contract import StoreContract

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture
def etcd():
    # A fresh single-member cluster per test: revisions start at 0 as the contract says.
    cluster = LocalEtcd(1, name="l3f-test-etcd", election_ms=100).start()
    yield cluster
    cluster.close()


class TestEtcdContract(StoreContract):
    @pytest.fixture
    def store(self, etcd: LocalEtcd):
        s = open_store(etcd.url)
        assert isinstance(s, EtcdStore)
        yield s
        s.close()

    def test_compaction_with_the_history_feed_running_still_asks_for_resync(
        self, store: EtcdStore
    ) -> None:
        store.watch("/", 0, 0)  # the feed keeps history from here on; compact must trim it
        self.test_watch_from_compacted_revision_asks_for_resync(store)


@pytest.mark.parametrize(
    "url",
    ["etcd://", "etcd://127.0.0.1", "etcd://127.0.0.1:2379/prefix", "etcd://h:1,h:notaport"],
)
def test_bad_etcd_urls_are_explained(url: str) -> None:
    with pytest.raises(ValueError, match="etcd://HOST:PORT"):
        open_store(url)


def test_unreachable_etcd_fails_fast_with_store_unavailable() -> None:
    store = EtcdStore(parse_endpoints(f"etcd://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"))
    calls = [
        store.revision,
        lambda: store.get("/a"),
        lambda: store.create("/a", {}),
        lambda: store.watch("/", 0, 5),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="unreachable"):
            call()
        assert time.monotonic() - started < 2


def test_compacted_watch_makes_the_agent_resync_never_a_gap(etcd: LocalEtcd) -> None:
    store = open_store(etcd.url)
    with TestClient(create_app(store)) as client:
        old = client.get("/v1/watch", params={"host": "h1"}).json()["revision"]
        for i in range(5):
            make(client, "networks", "network", name=f"n{i}")
        store.compact(store.revision())
        # This controller's fan-out still holds every change since: served whole, no gap.
        held = client.get("/v1/watch", params={"host": "h1", "since": old, "timeout": 0})
        names = [e["object"]["name"] for e in held.json()["events"] if e["kind"] == "network"]
        assert names == [f"n{i}" for i in range(5)]
        # A controller that does not hold them (started since) must send the agent to resync.
        with TestClient(create_app(store)) as other:
            stale = other.get("/v1/watch", params={"host": "h1", "since": old, "timeout": 0})
        assert error(stale, 410) == "ResyncRequired"
        fresh = client.get("/v1/watch", params={"host": "h1"}).json()
        make(client, "networks", "network", name="after")
        answer = client.get(
            "/v1/watch", params={"host": "h1", "since": fresh["revision"], "timeout": 5}
        )
        assert answer.status_code == 200
        assert answer.json()["revision"] == store.revision()
    store.close()


def test_etcd_down_is_a_quick_503_then_everything_resumes(etcd: LocalEtcd) -> None:
    store = open_store(etcd.url)
    with TestClient(create_app(store)) as client:
        before = make(client, "networks", "network", name="before")
        etcd.kill(0)
        started = time.monotonic()
        down = [
            client.post("/v2.0/networks", json={"network": {"name": "during"}}),
            client.get("/v2.0/networks"),
            client.get("/v1/watch", params={"host": "h1", "since": 0, "timeout": 5}),
        ]
        assert time.monotonic() - started < 5
        assert [error(r, 503) for r in down] == ["ServiceUnavailable"] * 3
        etcd.restart(0)
        make(client, "networks", "network", name="after")
        names = {n["name"] for n in client.get("/v2.0/networks").json()["networks"]}
        assert names == {"before", "after"}
        assert before["id"] in {n["id"] for n in client.get("/v2.0/networks").json()["networks"]}
    store.close()


def _etcd_watchers(etcd: LocalEtcd) -> int:
    metrics = httpx.get(f"{etcd.members[0].client_url}/metrics", timeout=5).text
    line = next(
        x for x in metrics.splitlines() if x.startswith("etcd_debugging_mvcc_watcher_total")
    )
    return int(float(line.split()[1]))


def test_many_long_polls_cost_etcd_one_watch_and_see_each_change(etcd: LocalEtcd) -> None:
    store = open_store(etcd.url)
    since = store.revision()
    answers: list[tuple] = []
    polls = [
        threading.Thread(target=lambda: answers.append(store.watch("/w/", since, 10)))
        for _ in range(20)
    ]
    for poll in polls:
        poll.start()
    time.sleep(0.5)
    watchers = _etcd_watchers(etcd)
    started = time.monotonic()
    rev = store.put("/w/x", {"v": 1})
    for poll in polls:
        poll.join(10)
    assert watchers == 1
    assert time.monotonic() - started < 1
    assert [[(e.key, e.revision) for e in events] for events, _ in answers] == [
        [("/w/x", rev)]
    ] * 20
    store.close()


def test_a_watch_sees_the_caller_s_own_write_at_once(etcd: LocalEtcd) -> None:
    store = open_store(etcd.url)
    store.watch("/", 0, 0)  # the history feed is running
    for i in range(30):
        since = store.revision()
        # Large values: the write's answer races etcd's stream to the feed.
        rev = store.put(f"/own/{i}", {"pad": "x" * 100_000})
        events, seen = store.watch("/own/", since, 0)
        assert [e.revision for e in events] == [rev] and seen == rev
    store.close()


def test_history_is_compacted_automatically(etcd: LocalEtcd) -> None:
    store = EtcdStore(parse_endpoints(etcd.url), history=20)
    for i in range(60):
        store.put("/k", {"i": i})
    with pytest.raises(CompactedError):
        store.watch("/", 30, timeout=0)
    events, _ = store.watch("/", 40, timeout=0)
    assert len(events) == 20
    store.close()
