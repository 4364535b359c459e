"""The store contract on a real etcd (Debian's etcd-server on loopback), and etcd's own cases."""

from __future__ import annotations

import pytest

from l3fabric.store import open_store
from l3fabric.store.etcd import EtcdStore, parse_endpoints
from l3fabric.store.etcd_local import LocalEtcd

from .store_contract import StoreContract


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
