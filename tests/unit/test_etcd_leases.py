"""The store's etcd leases (store/etcd_leases.py) on a real etcd on loopback:
many keys attached to one lease in a few writes, taken by another client's
lease, kept alive without a store revision, pipelined for many leases,
detached only from their own lease, and gone when their lease ends."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from l3fabric.loopback import free_port
from l3fabric.store import StoreError
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


def test_many_keys_share_a_lease_that_another_client_can_take_them_to(
    etcd: LocalEtcd, store: EtcdStore
) -> None:
    leases = store.leases()
    lease = leases.grant(10)
    before = store.revision()
    keys = {f"/live/hosts/h{n}": {"heartbeat_at": 1.0} for n in range(300)}
    leases.attach(keys, lease)
    assert store.revision() - before == 3  # 300 keys: 3 transactions
    assert leases.held("/live/hosts/") == keys
    written = store.revision()
    for _ in range(20):
        assert leases.keepalive([lease]) == {lease: 10}
    assert store.revision() == written  # keepalives are no writes
    other = EtcdStore(parse_endpoints(etcd.url))
    try:
        theirs = other.leases().grant(10)
        other.leases().attach({KEY: {"heartbeat_at": 2.0}}, theirs)
        leases.detach([KEY, "/live/hosts/h2"], lease)  # KEY is theirs now: it stays
        assert store.get(KEY) is not None and store.get("/live/hosts/h2") is None
    finally:
        other.close()


def test_many_leases_are_kept_alive_in_one_round(store: EtcdStore) -> None:
    leases = [store.leases().grant(30) for _ in range(300)]
    answers = store.leases().keepalive(leases)
    assert answers == dict.fromkeys(leases, 30)


def test_keys_go_with_their_lease(store: EtcdStore) -> None:
    lease = store.leases().grant(2)  # etcd's minimum TTL on this cluster
    store.leases().attach({KEY: {}, "/live/hosts/h2": {}}, lease)
    store.leases().release("/live/hosts/h2")
    assert store.get("/live/hosts/h2") is None and store.get(KEY) is not None
    deadline = time.monotonic() + 6
    while store.get(KEY) is not None:
        assert time.monotonic() < deadline, "the key outlived its lease"
        time.sleep(0.1)
    assert store.leases().keepalive([lease]) == {lease: -1}
    with pytest.raises(StoreError):  # attached to an expired lease: refused
        store.leases().attach({KEY: {}}, lease)


def test_keepalives_move_to_the_next_member(etcd: LocalEtcd) -> None:
    dead = f"127.0.0.1:{free_port()}"
    store = EtcdStore(parse_endpoints(f"etcd://{dead},{etcd.endpoints[0]}"))
    try:
        lease = store.leases().grant(10)
        store._current = 0  # the dead one first again
        assert store.leases().keepalive([lease]) == {lease: 10}
    finally:
        store.leases().release(KEY)
        store.close()


def test_a_connection_etcd_closed_is_opened_again(etcd: LocalEtcd, store: EtcdStore) -> None:
    lease = store.leases().grant(60)
    assert store.leases().keepalive([lease]) == {lease: 60}  # the connection is kept
    etcd.kill(0)
    etcd.restart(0)  # the kept connection is dead now; the lease is on disk
    assert store.leases().keepalive([lease]) == {lease: 60}
