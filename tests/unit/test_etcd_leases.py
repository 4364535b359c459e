"""The store's etcd leases (store/etcd_leases.py) on a real etcd on loopback:
a key held under a lease, adopted by another client, kept alive without a
store revision, pipelined for many leases, and gone when its lease ends."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from l3fabric.loopback import free_port
from l3fabric.store.etcd import EtcdStore, parse_endpoints
from l3fabric.store.etcd_local import LocalEtcd

KEY = "/live/hosts/h1"


@pytest.fixture(scope="module")
def etcd() -> Iterator[LocalEtcd]:
    with LocalEtcd(1, name="l3f-test-leases") as cluster:
        yield cluster


@pytest.fixture
def store(etcd: LocalEtcd) -> Iterator[EtcdStore]:
    s = EtcdStore(parse_endpoints(etcd.url))
    yield s
    for kv in s.range("/live/")[0]:
        s.leases().release(kv.key)
    s.close()


def test_a_key_is_written_once_and_adopted_by_another_client(
    etcd: LocalEtcd, store: EtcdStore
) -> None:
    lease = store.leases().hold(KEY, {"heartbeat_at": 1.0}, 10)
    written = store.revision()
    other = EtcdStore(parse_endpoints(etcd.url))
    try:
        assert other.leases().hold(KEY, {"heartbeat_at": 2.0}, 10) == lease
        assert other.leases().held("/live/hosts/") == {KEY: {"heartbeat_at": 1.0}}
    finally:
        other.close()
    for _ in range(20):
        assert store.leases().keepalive([lease]) == {lease: 10}
    assert store.revision() == written  # keepalives are no writes


def test_many_leases_are_kept_alive_in_one_round(store: EtcdStore) -> None:
    leases = [store.leases().hold(f"/live/hosts/h{n}", {}, 30) for n in range(300)]
    answers = store.leases().keepalive(leases)
    assert answers == dict.fromkeys(leases, 30)


def test_a_key_goes_with_its_lease(store: EtcdStore) -> None:
    lease = store.leases().hold(KEY, {}, 2)  # etcd's minimum TTL on this cluster
    store.leases().hold("/live/hosts/h2", {}, 10)
    store.leases().release("/live/hosts/h2")
    assert store.get("/live/hosts/h2") is None
    deadline = time.monotonic() + 6
    while store.get(KEY) is not None:
        assert time.monotonic() < deadline, "the key outlived its lease"
        time.sleep(0.1)
    assert store.leases().keepalive([lease]) == {lease: -1}
    renewed = store.leases().hold(KEY, {}, 10)  # taken again: a new lease
    assert renewed != lease and store.get(KEY) is not None


def test_keepalives_move_to_the_next_member(etcd: LocalEtcd) -> None:
    dead = f"127.0.0.1:{free_port()}"
    store = EtcdStore(parse_endpoints(f"etcd://{dead},{etcd.endpoints[0]}"))
    try:
        lease = store.leases().hold(KEY, {}, 10)
        store._current = 0  # the dead one first again
        assert store.leases().keepalive([lease]) == {lease: 10}
    finally:
        store.leases().release(KEY)
        store.close()


def test_a_connection_etcd_closed_is_opened_again(etcd: LocalEtcd, store: EtcdStore) -> None:
    lease = store.leases().hold(KEY, {}, 60)
    assert store.leases().keepalive([lease]) == {lease: 60}  # the connection is kept
    etcd.kill(0)
    etcd.restart(0)  # the kept connection is dead now; the lease is on disk
    assert store.leases().keepalive([lease]) == {lease: 60}
