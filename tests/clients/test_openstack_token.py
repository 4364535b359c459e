"""The real ``openstack`` CLI against ``--auth tokens``: ``--os-auth-type admin_token``
sends X-Auth-Token; without the right token it gets a 401 and nothing is made."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from l3fabric.api.app import create_app
from l3fabric.auth.tokens import TokenAuth
from l3fabric.store.sqlite import SqliteStore
from tests.clients.conftest import OPENSTACK
from tests.clients.server import running_server

ADMIN = "cli-admin-token-0123456789"
MEMBER = "cli-member-token-0123456789"


@pytest.fixture
def token_url(tmp_path: Path) -> Iterator[str]:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{ADMIN} admin admin\n{MEMBER} demo member\n")
    store = SqliteStore(tmp_path / "db")
    with running_server(create_app(store, authenticator=TokenAuth(tokens))) as url:
        yield url
    store.close()


def openstack(url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(OPENSTACK), "--os-auth-type", "admin_token", "--os-endpoint", url]
    return subprocess.run(
        [*command, "--os-token", token, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_openstack_cli_with_admin_token(token_url: str) -> None:
    done = openstack(token_url, MEMBER, "network", "create", "web", "-f", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["project_id"] == "demo"
    done = openstack(token_url, ADMIN, "network", "list", "-f", "json")
    assert done.returncode == 0, done.stderr
    assert [n["Name"] for n in json.loads(done.stdout)] == ["web"]
    refused = openstack(token_url, "wrong-token-0123456789", "network", "create", "evil")
    assert refused.returncode != 0
    assert "401" in refused.stderr or "Unauthorized" in refused.stderr, refused.stderr
    done = openstack(token_url, ADMIN, "network", "list", "-f", "json")
    assert [n["Name"] for n in json.loads(done.stdout)] == ["web"]
