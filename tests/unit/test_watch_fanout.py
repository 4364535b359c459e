"""The controller's watch fan-out (l3fabric.service.fanout): one reader decodes
each change once, and a change wakes and costs only the hosts it concerns,
however many other hosts are watching."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l3fabric import keys
from l3fabric.service.errors import Gone
from l3fabric.service.fanout import WatchHub
from l3fabric.store.sqlite import SqliteStore


class CountingStore(SqliteStore):
    """SQLite that counts the change-log reads (``watch``) and key reads."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.watches = 0
        self.reads = 0

    def watch(self, prefix: str, since: int, timeout: float) -> Any:
        self.watches += 1
        return super().watch(prefix, since, timeout)

    def get(self, key: str) -> Any:
        self.reads += 1
        return super().get(key)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CountingStore]:
    s = CountingStore(tmp_path / "fanout.db")
    yield s
    s.close()


@pytest.fixture
def hub(store: CountingStore) -> Iterator[WatchHub]:
    h = WatchHub(store)
    h.start()
    yield h
    h.stop()


def _port(port_id: str, host: str) -> dict[str, Any]:
    return {"id": port_id, "binding:host_id": host, "status": "DOWN", "security_groups": []}


def _watchers(hub: WatchHub, hosts: list[str], since: int) -> tuple[dict, list[threading.Thread]]:
    answers: dict[str, Any] = {}

    def poll(host: str) -> None:
        answers[host] = hub.watch(host, since, 5)

    threads = [threading.Thread(target=poll, args=(h,)) for h in hosts]
    for t in threads:
        t.start()
    # Every watcher is waiting before the change is made.
    deadline = time.monotonic() + 5
    while sum(len(w) for w in hub._waiters.by_host.values()) < len(hosts):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return answers, threads


def _cost_of_one_port_change(store: CountingStore, hub: WatchHub, watching: int) -> tuple:
    """Store reads and wake-ups for one port create on h0 while ``watching`` hosts wait."""
    since = store.revision()
    hosts = [f"h{i}" for i in range(watching)]
    answers, threads = _watchers(hub, hosts, since)
    reads, watches, wakeups = store.reads, store.watches, hub.wakeups
    store.put(keys.neutron_key("ports", f"p{since}"), _port(f"p{since}", "h0"))
    answers_h0 = None
    deadline = time.monotonic() + 5
    while answers_h0 is None and time.monotonic() < deadline:
        answers_h0 = answers.get("h0")
        time.sleep(0.01)
    cost = (store.reads - reads, hub.wakeups - wakeups)
    hub.stop()  # ends the other watchers at once
    for t in threads:
        t.join(timeout=5)
    assert answers_h0 is not None
    assert [(e["kind"], e["type"]) for e in answers_h0["events"]] == [("port", "put")]
    assert all(answers[h]["events"] == [] for h in hosts[1:])
    assert store.watches - watches <= 5  # the hub's reader only, whatever the watchers
    return cost


def test_a_change_costs_the_host_it_concerns_not_the_other_watchers(
    store: CountingStore, tmp_path: Path
) -> None:
    one = _cost_of_one_port_change(store, WatchHub(store), 1)
    many = _cost_of_one_port_change(store, WatchHub(store), 50)
    assert one == many
    assert many[1] == 1  # only h0's watch was woken


def test_a_broadcast_change_reaches_every_watcher_decoded_once(
    store: CountingStore, hub: WatchHub
) -> None:
    since = store.revision()
    answers, threads = _watchers(hub, ["h1", "h2", "h3"], since)
    store.put(keys.neutron_key("networks", "n1"), {"id": "n1"})
    for t in threads:
        t.join(timeout=5)
    for host in ("h1", "h2", "h3"):
        assert [(e["kind"], e["id"]) for e in answers[host]["events"]] == [("network", "n1")]
    assert hub.decoded == 1


def test_a_watch_resumes_from_its_revision_and_sees_nothing_twice(
    store: CountingStore, hub: WatchHub
) -> None:
    since = store.revision()
    store.put(keys.neutron_key("ports", "p1"), _port("p1", "h1"))
    first = hub.watch("h1", since, 5)
    store.put(keys.neutron_key("ports", "p2"), _port("p2", "h1"))
    second = hub.watch("h1", first["revision"], 5)
    assert [e["id"] for e in first["events"]] == ["p1"]
    assert [e["id"] for e in second["events"]] == ["p2"]
    # Nothing new: the poll ends at its timeout with the revision it had.
    assert hub.watch("h1", second["revision"], 0.1) == {
        "revision": second["revision"],
        "events": [],
    }


def test_a_watch_from_before_the_hub_started_is_served_from_the_store(
    store: CountingStore,
) -> None:
    since = store.revision()
    store.put(keys.neutron_key("ports", "p1"), _port("p1", "h1"))
    late = WatchHub(store)  # started after the change, like a restarted controller
    try:
        answer = late.watch("h1", since, 5)
    finally:
        late.stop()
    assert [e["id"] for e in answer["events"]] == ["p1"]


def test_compacted_or_future_revisions_mean_resync(store: CountingStore, hub: WatchHub) -> None:
    store.put(keys.neutron_key("networks", "n1"), {"id": "n1"})
    with pytest.raises(Gone):
        hub.watch("h1", store.revision() + 5, 0)
    since = store.revision()
    store.put(keys.neutron_key("networks", "n2"), {"id": "n2"})
    store.compact(store.revision())
    old = WatchHub(store, history=1)
    try:
        with pytest.raises(Gone) as caught:
            old.watch("h1", since - 1, 0)
    finally:
        old.stop()
    assert caught.value.type == "ResyncRequired"


def test_gateways_see_every_bound_port(store: CountingStore) -> None:
    store.put(keys.gateway_key("gw"), {"name": "gw"})
    hub = WatchHub(store)
    try:
        since = hub.watch("gw", store.revision(), 0)["revision"]
        store.put(keys.neutron_key("ports", "p1"), _port("p1", "h7"))
        answer = hub.watch("gw", since, 5)
    finally:
        hub.stop()
    assert [(e["kind"], e["id"]) for e in answer["events"]] == [("port", "p1")]


def test_a_host_waits_through_any_number_of_other_hosts_changes(
    store: CountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = WatchHub(store, history=5, host_history=5)
    try:
        since = hub.watch("h1", store.revision(), 0)["revision"]
        for i in range(30):  # far more batches than the hub keeps, none of them h1's
            revision = store.put(keys.neutron_key("ports", f"q{i}"), _port(f"q{i}", "h2"))
            hub.watch("h2", revision - 1, 5)  # read by the hub: one batch each
        store.put(keys.neutron_key("ports", "p1"), _port("p1", "h1"))

        def from_the_store(*args: Any) -> None:
            raise AssertionError("h1's watch was served from the store")

        monkeypatch.setattr("l3fabric.service.fanout.watch_blocking", from_the_store)
        answer = hub.watch("h1", since, 5)
    finally:
        hub.stop()
    assert [(e["kind"], e["id"]) for e in answer["events"]] == [("port", "p1")]


def test_async_watches_hold_no_thread_and_get_their_own_events(
    store: CountingStore, hub: WatchHub
) -> None:
    since = store.revision()
    hosts = [f"h{i}" for i in range(200)]

    async def scenario() -> tuple[int, list[Any]]:
        watches = [asyncio.create_task(hub.watch_async(h, since, 5)) for h in hosts]
        deadline = time.monotonic() + 5
        while sum(len(w) for w in hub._waiters.by_host.values()) < len(hosts):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        threads = threading.active_count()
        store.put(keys.neutron_key("ports", "p1"), _port("p1", "h7"))
        first = await asyncio.wait_for(watches[7], 5)
        assert not any(w.done() for i, w in enumerate(watches) if i != 7)
        hub.stop()  # ends the others at once
        return threads, [first, *await asyncio.gather(*watches)]

    before = threading.active_count()
    threads, answers = asyncio.run(scenario())
    assert threads <= before + 2  # the event loop's, not one per watch
    assert [(e["kind"], e["id"]) for e in answers[0]["events"]] == [("port", "p1")]
    assert all(a["events"] == [] for i, a in enumerate(answers[1:]) if i != 7)


def test_async_watch_times_out_empty_and_refuses_a_future_revision(
    store: CountingStore, hub: WatchHub
) -> None:
    since = store.revision()
    answer = asyncio.run(hub.watch_async("h1", since, 0.2))
    assert answer == {"revision": since, "events": []}
    with pytest.raises(Gone):
        asyncio.run(hub.watch_async("h1", since + 5, 3))


def test_a_loop_wake_set_from_another_thread_is_not_lost_and_times_out() -> None:
    from l3fabric.service.fanout import _LoopWake

    async def scenario() -> tuple[float, float]:
        wake = _LoopWake(asyncio.get_running_loop())
        threading.Thread(target=wake.set).start()
        await asyncio.sleep(0.05)  # set before the wait: the wait returns at once
        began = time.monotonic()
        await wake.wait(5)
        early = time.monotonic() - began
        began = time.monotonic()
        await wake.wait(0.2)  # cleared by the last wait: waits the whole timeout
        return early, time.monotonic() - began

    early, late = asyncio.run(scenario())
    assert early < 0.1 and 0.15 < late < 2
