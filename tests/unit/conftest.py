"""Fixtures shared by the API tests: the real app over a fresh SQLite store."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from l3fabric.api.app import create_app
from l3fabric.store.sqlite import SqliteStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture
def client(tmp_path: Path):
    store = SqliteStore(tmp_path / "db")
    with TestClient(create_app(store)) as c:
        yield c
    store.close()
