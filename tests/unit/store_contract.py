"""The contract every Store backend must meet.

A backend's test module imports ``StoreContract`` and provides a ``store``
fixture returning a fresh, empty store; the etcd backend runs the same class.
"""

from __future__ import annotations

import threading

import pytest

from l3fabric.store import (
    CompactedError,
    Compare,
    Create,
    Delete,
    KeyExistsError,
    KeyNotFoundError,
    Put,
    RevisionMismatchError,
    Store,
    Update,
)


class StoreContract:
    def test_empty_store_is_revision_zero(self, store: Store) -> None:
        assert store.revision() == 0
        assert store.get("/a") is None
        assert store.range("/") == ([], 0)

    def test_create_then_get(self, store: Store) -> None:
        rev = store.create("/a", {"x": 1})
        kv = store.get("/a")
        assert kv is not None
        assert (kv.value, kv.create_revision, kv.mod_revision, kv.version) == (
            {"x": 1},
            rev,
            rev,
            1,
        )

    def test_create_refuses_existing_key(self, store: Store) -> None:
        store.create("/a", {"x": 1})
        with pytest.raises(KeyExistsError):
            store.create("/a", {"x": 2})
        assert store.get("/a").value == {"x": 1}

    def test_update_needs_current_mod_revision(self, store: Store) -> None:
        rev = store.create("/a", {"x": 1})
        rev2 = store.update("/a", {"x": 2}, rev)
        with pytest.raises(RevisionMismatchError):
            store.update("/a", {"x": 3}, rev)
        kv = store.get("/a")
        assert (kv.value, kv.mod_revision, kv.create_revision, kv.version) == (
            {"x": 2},
            rev2,
            rev,
            2,
        )

    def test_update_and_delete_of_missing_key_fail(self, store: Store) -> None:
        with pytest.raises(KeyNotFoundError):
            store.update("/a", {}, 1)
        with pytest.raises(KeyNotFoundError):
            store.delete("/a")

    def test_guarded_delete(self, store: Store) -> None:
        rev = store.create("/a", {})
        store.put("/a", {"y": 1})
        with pytest.raises(RevisionMismatchError):
            store.delete("/a", rev)
        store.delete("/a", store.get("/a").mod_revision)
        assert store.get("/a") is None

    def test_get_many_finds_the_keys_that_exist(self, store: Store) -> None:
        for n in range(200):  # more than one etcd transaction holds
            store.create(f"/p/{n}", {"n": n})
        keys = [f"/p/{n}" for n in range(0, 200, 2)] + ["/p/gone", "/q"]
        found = store.get_many(keys)
        assert set(found) == set(keys[:-2])
        assert found["/p/42"] == store.get("/p/42")
        assert store.get_many([]) == {}

    def test_range_is_prefix_only_and_sorted(self, store: Store) -> None:
        for key in ["/p/b", "/p/a", "/pa", "/q/a", "/p/c/d"]:
            store.put(key, {"k": key})
        kvs, rev = store.range("/p/")
        assert [kv.key for kv in kvs] == ["/p/a", "/p/b", "/p/c/d"]
        assert rev == store.revision() == 5

    def test_txn_is_all_or_nothing_and_one_revision(self, store: Store) -> None:
        store.create("/taken", {})
        before = store.revision()
        with pytest.raises(KeyExistsError):
            store.txn([Create("/new", {}), Create("/taken", {})])
        assert store.get("/new") is None
        assert store.revision() == before
        rev = store.txn([Create("/n1", {}), Put("/n2", {}), Delete("/taken")])
        assert rev == before + 1
        assert store.get("/n1").mod_revision == store.get("/n2").mod_revision == rev

    def test_txn_update_guard_fails_whole_txn(self, store: Store) -> None:
        rev = store.create("/a", {"v": 1})
        store.put("/a", {"v": 2})
        with pytest.raises(RevisionMismatchError):
            store.txn([Put("/b", {}), Update("/a", {"v": 3}, rev)])
        assert store.get("/b") is None

    def test_compare_guards_a_txn_without_writing_the_key(self, store: Store) -> None:
        rev = store.create("/parent", {"v": 1})
        rev2 = store.txn([Compare("/parent", rev), Put("/child", {})])
        parent = store.get("/parent")
        assert (parent.mod_revision, parent.version) == (rev, 1)
        events, _ = store.watch("/parent", rev, timeout=0)
        assert events == []
        store.put("/parent", {"v": 2})
        with pytest.raises(RevisionMismatchError):
            store.txn([Compare("/parent", rev), Put("/child", {"late": True})])
        assert store.get("/child").mod_revision == rev2

    def test_compare_zero_means_absent(self, store: Store) -> None:
        store.txn([Compare("/gone", 0), Put("/x", {})])
        with pytest.raises(RevisionMismatchError) as missing:
            store.txn([Compare("/gone", 7), Put("/y", {})])
        assert (missing.value.expected, missing.value.actual) == (7, 0)
        rev = store.create("/gone", {})
        with pytest.raises(RevisionMismatchError) as present:
            store.txn([Compare("/gone", 0), Put("/y", {})])
        assert (present.value.key, present.value.actual) == ("/gone", rev)
        assert store.get("/y") is None

    def test_compare_only_txn_writes_no_revision(self, store: Store) -> None:
        rev = store.create("/a", {})
        assert store.txn([Compare("/a", rev), Compare("/b", 0)]) == rev
        assert store.revision() == rev

    def test_watch_returns_events_after_since(self, store: Store) -> None:
        r1 = store.create("/w/a", {"v": 1})
        store.put("/other", {})
        r3 = store.put("/w/a", {"v": 2})
        r4 = store.delete("/w/a")
        events, seen = store.watch("/w/", r1, timeout=0)
        assert [(e.type, e.revision, e.value, e.prev_value) for e in events] == [
            ("put", r3, {"v": 2}, {"v": 1}),
            ("delete", r4, None, {"v": 2}),
        ]
        assert seen == r4

    def test_watch_blocks_until_a_change(self, store: Store) -> None:
        since = store.revision()
        timer = threading.Timer(0.2, lambda: store.put("/w/x", {"v": 1}))
        timer.start()
        try:
            events, _ = store.watch("/w/", since, timeout=5)
        finally:
            timer.join()
        assert [e.key for e in events] == ["/w/x"]

    def test_watch_times_out_empty(self, store: Store) -> None:
        store.put("/elsewhere", {})
        events, seen = store.watch("/w/", 0, timeout=0.1)
        assert events == []
        assert seen == store.revision()

    def test_watch_from_compacted_revision_asks_for_resync(self, store: Store) -> None:
        for i in range(5):
            store.put(f"/w/{i}", {})
        store.compact(3)
        with pytest.raises(CompactedError):
            store.watch("/w/", 1, timeout=0)
        events, _ = store.watch("/w/", 3, timeout=0)
        assert [e.revision for e in events] == [4, 5]

    def test_concurrent_creates_of_one_key_have_one_winner(self, store: Store) -> None:
        wins: list[int] = []
        losses: list[int] = []

        def claim(i: int) -> None:
            try:
                store.create("/claim", {"by": i})
                wins.append(i)
            except KeyExistsError:
                losses.append(i)

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 1
        assert len(losses) == 15
        assert store.get("/claim").value == {"by": wins[0]}
