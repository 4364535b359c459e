"""The store contract on SQLite, plus what only a file-backed store can show."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from l3fabric.store import KeyExistsError, open_store
from l3fabric.store.sqlite import SqliteStore

from .store_contract import StoreContract


class TestSqliteContract(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path):
        s = SqliteStore(tmp_path / "s.db")
        yield s
        s.close()


def _claim_many(path: str, worker: int, out) -> None:
    store = SqliteStore(path)
    won = 0
    for i in range(50):
        try:
            store.create(f"/claim/{i}", {"by": worker})
            won += 1
        except KeyExistsError:
            pass
    store.close()
    out.put(won)


def test_two_processes_on_one_file_never_double_claim(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    SqliteStore(path).close()
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_many, args=(path, w, out)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert sum(out.get(timeout=5) for _ in procs) == 50
    store = SqliteStore(path)
    kvs, rev = store.range("/claim/")
    assert len(kvs) == 50
    assert rev == 50


def test_data_survives_reopen(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    store.create("/a", {"v": 1})
    store.close()
    again = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    assert again.get("/a").value == {"v": 1}
    assert again.revision() == 1


def test_history_is_compacted_automatically(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "h.db", history=20)
    for i in range(60):
        store.put("/k", {"i": i})
    events, _ = store.watch("/", 40, timeout=0)
    assert len(events) == 20


@pytest.mark.parametrize("url", ["postgres://x", "sqlite://relative.db", "sqlite:///"])
def test_bad_store_urls_are_explained(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite:///"):
        open_store(url)


def test_the_server_s_default_store_is_a_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite stays the default (issue 13): ``l3fabric server`` without ``--store``."""
    from l3fabric import cli
    from l3fabric.commands import server

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    served: list[str] = []
    monkeypatch.setattr(server, "serve", lambda url, *args, **kwargs: served.append(url) or 0)
    args = cli.build_parser("server").parse_args(["server"])
    assert args.func(args) == 0
    assert served == [f"sqlite:///{tmp_path / 'l3fabric' / 'l3fabric.db'}"]
    store = open_store(served[0])
    assert isinstance(store, SqliteStore)
    store.close()
