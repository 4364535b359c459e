"""What agents and client commands send: the token from a file or the environment
(never the command line), re-read after a 401; ``l3fabric anycast --token-file``."""

from __future__ import annotations

import warnings
from pathlib import Path

import httpx
import pytest

from l3fabric import cli
from l3fabric.api.app import create_app
from l3fabric.auth.tokens import TokenAuth
from l3fabric.client import ApiError, FabricClient
from l3fabric.commands import controller_cli
from l3fabric.credentials import Credentials, CredentialsError, read_token
from l3fabric.store.sqlite import SqliteStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

OLD = "old-agent-token-0123456789"
NEW = "new-agent-token-0123456789"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch) -> None:
    """The tests' own credentials only, whatever the caller's environment holds."""
    for name in ("L3FABRIC_TOKEN", "L3FABRIC_TOKEN_FILE", "L3FABRIC_CA", "OS_TOKEN", "OS_CACERT"):
        monkeypatch.delenv(name, raising=False)


def test_token_from_the_environment_and_files(tmp_path: Path, monkeypatch) -> None:
    assert Credentials.from_env() == Credentials()
    monkeypatch.setenv("OS_TOKEN", OLD)
    assert Credentials.from_env().token == OLD
    monkeypatch.setenv("L3FABRIC_TOKEN", NEW)
    assert Credentials.from_env().token == NEW
    path = tmp_path / "token"
    path.write_text(f"# the agent's token\n\n  {OLD}  \n")
    assert read_token(path) == OLD
    path.write_text("# nothing\n")
    with pytest.raises(CredentialsError, match="holds no token"):
        read_token(path)
    with pytest.raises(CredentialsError, match="cannot read the token file"):
        Credentials(token_file=str(tmp_path / "missing")).auth()
    with pytest.raises(CredentialsError, match="cannot use the CA file"):
        Credentials(ca=str(path)).verify()


def test_a_rotated_token_is_picked_up_after_a_401(tmp_path: Path) -> None:
    seen: list[str | None] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-auth-token"))
        ok = request.headers.get("x-auth-token") == NEW
        return httpx.Response(200 if ok else 401, json={} if ok else {"NeutronError": {}})

    path = tmp_path / "token"
    path.write_text(f"{OLD}\n")
    creds = Credentials(token_file=str(path))
    with FabricClient("http://ctl", transport=httpx.MockTransport(server), credentials=creds) as c:
        with pytest.raises(ApiError):
            c.get_fabric()  # the file still holds the old token: no retry
        assert seen == [OLD]
        path.write_text(f"{NEW}\n")
        assert c.get_fabric() == {}
        assert seen == [OLD, OLD, NEW]
        assert c.get_fabric() == {}
        assert seen[-1] == NEW  # kept


def test_anycast_command_sends_the_token_file(tmp_path: Path, monkeypatch, capsys) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{NEW} admin admin\n")
    mine = tmp_path / "mine"
    mine.write_text(f"{NEW}\n")
    store = SqliteStore(tmp_path / "db")
    with TestClient(create_app(store, authenticator=TokenAuth(tokens))) as test_client:
        monkeypatch.setattr(
            controller_cli,
            "FabricClient",
            lambda url, **kw: FabricClient(url, transport=test_client._transport, **kw),
        )
        assert cli.main(["anycast", "list"]) == 1
        assert "Authentication required" in capsys.readouterr().err
        assert cli.main(["anycast", "--token-file", str(mine), "list"]) == 0
    store.close()
