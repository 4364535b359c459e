"""A real server for the OpenStack clients: uvicorn on loopback in a thread,
over a fresh SQLite file."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from l3fabric.api.app import create_app
from l3fabric.store.sqlite import SqliteStore
from tests.clients.server import running_server

OPENSTACK = Path(sys.executable).with_name("openstack")


@pytest.fixture
def neutron_url(tmp_path: Path) -> Iterator[str]:
    store = SqliteStore(tmp_path / "db")
    with running_server(create_app(store)) as url:
        yield url
    store.close()


@dataclass
class Cli:
    """The ``openstack`` command against one server, with no Keystone."""

    url: str

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(OPENSTACK), "--os-auth-type", "none", "--os-endpoint", self.url, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def json(self, *args: str) -> dict | list:
        done = self.run(*args, "-f", "json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture
def cli(neutron_url: str) -> Cli:
    if not OPENSTACK.exists():
        pytest.fail(f"{OPENSTACK} is missing: install the package with its test extras")
    return Cli(neutron_url)
