"""Liveness every controller agrees on (``LeaseLiveness``), on a fake lease
client with a fake clock: what a heartbeat keeps alive, what every controller
shows, and what a controller's death does not change. The real etcd leases
are tested in test_etcd_leases.py and tests/integration/test_etcd_liveness.py."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from l3fabric.service.fabric import FabricService
from l3fabric.service.liveness import LeaseLiveness, MemoryLiveness
from l3fabric.store import StoreError, StoreUnavailableError
from l3fabric.store.base import JSON
from l3fabric.store.sqlite import SqliteStore

GRACE = 4.0
HOST = {"router_id": "10.0.0.11", "address": "10.0.0.11"}


class FakeLeases:
    """etcd's leases in a dict, on a clock the test moves (``now``)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.keys: dict[str, tuple[int, JSON]] = {}
        self.leases: dict[int, tuple[int, float]] = {}  # id -> (ttl, expires at)
        self.writes = 0  # key writes (store revisions on etcd)
        self.renewed: list[int] = []  # every lease each keepalive renewed
        self.down = False
        self._ids = itertools.count(100)
        self.lock = threading.RLock()  # the renewer thread and the test both call in

    def _expire(self) -> None:
        for lease, (_, expires) in list(self.leases.items()):
            if expires <= self.now:
                del self.leases[lease]
                self.keys = {k: v for k, v in self.keys.items() if v[0] != lease}

    def grant(self, ttl: int) -> int:
        with self.lock:
            self._check()
            lease = next(self._ids)
            self.leases[lease] = (ttl, self.now + ttl)
            return lease

    def attach(self, values: Mapping[str, JSON], lease: int) -> None:
        with self.lock:
            self._check()
            if lease not in self.leases:
                raise StoreError("etcdserver: requested lease not found")
            self.keys.update({key: (lease, value) for key, value in values.items()})
            self.writes += 1  # one transaction

    def detach(self, keys: Sequence[str], lease: int) -> None:
        with self.lock:
            self._check()
            for key in keys:
                if self.keys.get(key, (None,))[0] == lease:
                    del self.keys[key]
                    self.writes += 1

    def keepalive(self, leases: Sequence[int]) -> dict[int, int]:
        with self.lock:
            self._check()
            answers = {}
            for lease in leases:
                if lease in self.leases:
                    ttl = self.leases[lease][0]
                    self.leases[lease] = (ttl, self.now + ttl)
                    self.renewed.append(lease)
                    answers[lease] = ttl
                else:
                    answers[lease] = -1
            return answers

    def release(self, key: str) -> None:
        with self.lock:
            self._check()
            self.keys.pop(key, None)

    def held(self, prefix: str) -> dict[str, JSON]:
        with self.lock:
            self._check()
            return {k: v for k, (_, v) in self.keys.items() if k.startswith(prefix)}

    def _check(self) -> None:
        self._expire()
        if self.down:
            raise StoreUnavailableError("etcd is unreachable (fake)")


@pytest.fixture
def leases() -> FakeLeases:
    return FakeLeases()


TTL = int(GRACE)
TICK = TTL / LeaseLiveness.TICKS


@pytest.fixture
def controllers(leases: FakeLeases) -> Iterator[tuple[LeaseLiveness, LeaseLiveness]]:
    # No renewer threads: the test runs the rounds (``renew``) on the fake clock.
    pair = tuple(
        LeaseLiveness(leases, lambda: GRACE, clock=lambda: leases.now, background=False)
        for _ in range(2)
    )
    yield pair  # type: ignore[misc]
    for liveness in pair:
        liveness.close()


def up(liveness: LeaseLiveness, name: str = "h1") -> bool:
    return name in liveness.up("host", {name: None}, GRACE)


def run(leases: FakeLeases, seconds: float, *alive: LeaseLiveness) -> None:
    """``seconds`` of the fake clock, each renewer of ``alive`` running a round every tick."""
    for _ in range(round(seconds / TICK)):
        leases.now += TICK
        for liveness in alive:
            liveness.renew()


def test_a_heartbeat_does_not_wait_on_etcd(
    leases: FakeLeases, controllers: tuple[LeaseLiveness, LeaseLiveness]
) -> None:
    a, _ = controllers
    leases.down = True  # any call to etcd would raise
    assert a.beat("host", "h1", {"agent": {"n": 1}})["agent"] == {"n": 1}
    leases.down = False
    assert leases.writes == 0 and not up(a)  # taken by the renewer's round, not the heartbeat


def test_a_host_that_beats_to_one_controller_is_up_on_every_controller(
    leases: FakeLeases, controllers: tuple[LeaseLiveness, LeaseLiveness]
) -> None:
    a, b = controllers
    assert not up(a) and not up(b)
    a.beat("host", "h1", {"agent": {}})
    a.renew()  # the next round after the heartbeat writes its key
    assert up(a) and up(b)
    assert a.up("host", {"h1": None, "h2": None}, GRACE) == {"h1"}  # the list's one read
    assert b.last("host", "h1") is None  # the report itself stays with its controller


def test_a_beating_hosts_lease_keeps_two_thirds_of_its_ttl_with_one_write(
    leases: FakeLeases, controllers: tuple[LeaseLiveness, LeaseLiveness]
) -> None:
    a, b = controllers
    for n in range(30):
        a.beat("host", "h1", {"agent": {"n": n}})
        for _ in range(round(GRACE / 2 / TICK)):
            run(leases, TICK, a)
            ((_, expires),) = leases.leases.values()
            # What a controller's kill -9 leaves the agent's next heartbeat.
            assert expires - leases.now >= TTL * 2 / 3 - 1e-9
        assert up(b)
    assert leases.writes == 1
    # Renewed every TTL/3, not every tick: 1.5 keepalives per heartbeat.
    assert len(leases.renewed) <= 30 * 1.5 + 1


def test_a_host_that_stops_is_down_on_every_controller_a_ttl_after_its_last_heartbeat(
    leases: FakeLeases, controllers: tuple[LeaseLiveness, LeaseLiveness]
) -> None:
    a, b = controllers
    a.beat("host", "h1", {})
    a.beat("host", "h2", {})
    run(leases, GRACE / 2, a)
    a.beat("host", "h1", {})
    a.beat("host", "h2", {})
    run(leases, GRACE / 2, a)
    a.beat("host", "h2", {})  # h1 stopped a grace ago; h2 beats on
    run(leases, TTL - GRACE / 2 - TICK, a)
    assert up(a) and up(b)
    run(leases, 2 * TICK, a)
    assert not up(a) and not up(b)
    assert up(a, "h2") and up(b, "h2")  # the lease they shared lives on


def test_the_next_controller_takes_the_host_without_a_gap(
    leases: FakeLeases, controllers: tuple[LeaseLiveness, LeaseLiveness]
) -> None:
    a, b = controllers
    a.beat("host", "h1", {})
    run(leases, GRACE / 2, a)
    a.beat("host", "h1", {})
    # a dies here (its rounds stop); the agent's next heartbeat goes to b.
    for _ in range(5):
        run(leases, GRACE / 2, b)
        assert up(b)
        b.beat("host", "h1", {})
        b.renew()  # the round right after the heartbeat of an agent it does not hold
    assert leases.writes == 2  # b wrote the key once, under its own lease
    assert list(leases.leases) == [b._lease[0]]  # a's expired, and nothing went with it


def test_a_host_that_comes_back_from_another_controller_is_attached_again(
    leases: FakeLeases, controllers: tuple[LeaseLiveness, LeaseLiveness]
) -> None:
    a, b = controllers
    a.beat("host", "h1", {})
    run(leases, 5 * TICK, a, b)
    b.beat("host", "h1", {})  # a blip: the agent moved to b, which took its key
    run(leases, 5 * TICK, a, b)  # back to a within a TTL: a never found it silent
    for _ in range(6):  # and b dies, its lease expires
        a.beat("host", "h1", {})
        run(leases, GRACE / 2, a)
        assert up(a)


def test_one_keepalive_keeps_every_host_of_a_controller(
    leases: FakeLeases, controllers: tuple[LeaseLiveness, LeaseLiveness]
) -> None:
    a, _ = controllers
    hosts = [f"h{n}" for n in range(300)]
    for _ in range(6):
        for name in hosts:
            a.beat("host", name, {})
        run(leases, GRACE / 2, a)
    assert a.up("host", dict.fromkeys(hosts), GRACE) == set(hosts)
    assert len(leases.leases) == 1 and leases.writes == 1
    assert len(leases.renewed) <= 6 * GRACE / 2 / (TTL / 3) + 1  # per TTL/3, not per host


def test_a_lease_that_expired_is_taken_again(
    leases: FakeLeases, controllers: tuple[LeaseLiveness, LeaseLiveness]
) -> None:
    a, _ = controllers
    a.beat("host", "h1", {})
    a.renew()
    leases.now += GRACE + 1  # this process stalled: no round
    assert not up(a)
    a.beat("host", "h1", {})
    a.renew()  # the keepalive finds it gone
    a.renew()  # and the next round takes a new one
    assert up(a)
    assert leases.writes == 2


def test_the_renewer_goes_on_while_etcd_is_away(
    leases: FakeLeases, controllers: tuple[LeaseLiveness, LeaseLiveness]
) -> None:
    a, _ = controllers
    a.beat("host", "h1", {})
    a.renew()
    leases.down = True
    a.beat("host", "h2", {})  # a new one: not taken, not an error
    run(leases, GRACE / 2, a)
    leases.down = False
    a.beat("host", "h1", {"agent": {"n": 1}})
    a.beat("host", "h2", {})
    a.renew()
    assert up(a, "h1") and up(a, "h2")
    assert a.last("host", "h1")["agent"] == {"n": 1}


def test_a_deleted_agent_loses_its_lease(
    leases: FakeLeases, controllers: tuple[LeaseLiveness, LeaseLiveness]
) -> None:
    a, b = controllers
    a.beat("host", "h1", {})
    a.renew()
    b.forget("host", "h1")
    assert not up(a) and a.last("host", "h1") is not None  # a's memory is a's


class LeasedSqlite(SqliteStore):
    """SQLite with the fake's leases: two FabricServices on it are two controllers."""

    def __init__(self, path: Path, leases: FakeLeases) -> None:
        super().__init__(path)
        self._fake = leases

    def leases(self) -> FakeLeases:  # type: ignore[override]
        return self._fake


def test_every_controllers_host_views_agree(tmp_path: Path, leases: FakeLeases) -> None:
    store = LeasedSqlite(tmp_path / "leased.db", leases)
    first, second = FabricService(store), FabricService(store)
    try:
        assert isinstance(first.liveness, LeaseLiveness)
        first.hosts.register("h1", HOST)
        first.host_heartbeat("h1", {"agent": {"controller": "http://c1"}})
        deadline = time.monotonic() + 1  # first's renewer writes the key within a round
        while first.hosts.show("h1")["status"] != "up":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        views = [first.hosts.show("h1"), second.hosts.show("h1"), second.hosts.list()[0]]
        assert [v["status"] for v in views] == ["up"] * 3
        assert views[0]["agent"] == {"controller": "http://c1"}  # stored: a change of state
        first.liveness.close()  # first dies: its renewer stops
        leases.now += GRACE
        assert [f.hosts.show("h1")["status"] for f in (first, second)] == ["down"] * 2
    finally:
        first.close()
        second.close()
        store.close()


def test_one_controller_on_sqlite_keeps_liveness_in_memory(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "plain.db")
    fabric = FabricService(store)
    assert isinstance(fabric.liveness, MemoryLiveness)
    fabric.hosts.register("h1", HOST)
    fabric.host_heartbeat("h1", {})
    assert fabric.hosts.show("h1")["status"] == "up"
    store.close()


def test_a_round_that_fails_unexpectedly_does_not_end_the_renewals(leases: FakeLeases) -> None:
    real, calls = leases.attach, []

    def broken_once(values: Mapping[str, JSON], lease: int) -> None:
        calls.append(values)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        real(values, lease)

    leases.attach = broken_once  # type: ignore[method-assign]
    a = LeaseLiveness(leases, lambda: GRACE, clock=lambda: leases.now, gather_s=0.0)
    try:
        a.beat("host", "h1", {})  # starts the renewer thread
        deadline = time.monotonic() + 5
        while not up(a):  # the round after the broken one writes its key
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert len(calls) == 2
    finally:
        a.close()
