"""``l3fabric anycast ...`` against the real app (in process) over a SQLite store."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import pytest

from l3fabric import cli
from l3fabric.api.app import create_app
from l3fabric.client import FabricClient
from l3fabric.commands import anycast as command
from l3fabric.commands import controller_cli
from l3fabric.store.sqlite import SqliteStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture
def api(tmp_path: Path, monkeypatch):
    store = SqliteStore(tmp_path / "db")
    with TestClient(create_app(store)) as test_client:
        # The command talks HTTP through the test client's in-process transport.
        monkeypatch.setattr(
            controller_cli,
            "FabricClient",
            lambda url, **kw: FabricClient(url, transport=test_client._transport, **kw),
        )
        with FabricClient("http://testserver", transport=test_client._transport) as client:
            yield client
    store.close()


@pytest.fixture
def subnet(api):
    net = api.create_network(name="web")
    return api.create_subnet(network_id=net["id"], cidr="10.0.0.0/24")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["anycast", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_create_list_members_show_delete(api, subnet, capsys) -> None:
    a = api.create_port(network_id=subnet["network_id"], **{"binding:host_id": "h1"})
    b = api.create_port(network_id=subnet["network_id"], **{"binding:host_id": "h2"})
    code, out, err = run(
        capsys,
        "create", "--name", "web", "--subnet", subnet["id"], "--address", "10.0.0.80",
        "--member", a["id"], "--check", "http:8080/health", "--interval", "0.2",
        "--timeout", "0.1", "--fall", "3",
    )  # fmt: skip
    assert code == 0, err
    group = json.loads(out)
    assert group["address"] == "10.0.0.80"
    assert group["members"] == [a["id"]]
    assert group["health_check"] == {
        "type": "http", "port": 8080, "path": "/health",
        "interval_s": 0.2, "timeout_s": 0.1, "rise": 2, "fall": 3,
    }  # fmt: skip
    code, out, _ = run(capsys, "add-member", "web", b["id"])  # by name
    assert code == 0
    assert json.loads(out)["members"] == [a["id"], b["id"]]
    code, out, _ = run(capsys, "list")
    header, row = out.splitlines()
    assert header.split() == ["ID", "NAME", "ADDRESS", "MEMBERS", "HEALTHY", "CHECK"]
    assert row.split() == [group["id"], "web", "10.0.0.80", "2", "0", "http"]
    assert run(capsys, "remove-member", group["id"], a["id"])[0] == 0
    code, out, _ = run(capsys, "show", "web")
    assert json.loads(out)["members"] == [b["id"]]
    assert run(capsys, "delete", "web")[0] == 0
    assert api.list_anycast() == []


def test_errors_are_readable(api, subnet, capsys) -> None:
    code, _, err = run(
        capsys, "create", "--name", "x", "--subnet", subnet["id"], "--member", "nope"
    )
    assert code == 1
    assert "Port nope could not be found. (PortNotFound)" in err
    with pytest.raises(SystemExit, match="no group has the id or name 'ghost'"):
        run(capsys, "show", "ghost")
    with pytest.raises(SystemExit, match="need --check"):
        run(capsys, "create", "--name", "x", "--subnet", subnet["id"], "--rise", "3")


@pytest.mark.parametrize(
    ("text", "check"),
    [
        ("icmp", {"type": "icmp"}),
        ("tcp:443", {"type": "tcp", "port": 443}),
        ("http:80", {"type": "http", "port": 80}),
        ("http:80/a/b", {"type": "http", "port": 80, "path": "/a/b"}),
    ],
)
def test_check_syntax(text, check) -> None:
    assert command.parse_check(text) == check


@pytest.mark.parametrize("text", ["tcp", "udp:53", "tcp:80/x", "icmp:1", "http:abc", ""])
def test_bad_check_syntax(text) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        command.parse_check(text)


def test_unreachable_controller(capsys) -> None:
    # Port 9 on loopback (discard): nothing listens, the connection is refused.
    code, _, err = run(capsys, "--api", "http://127.0.0.1:9", "list")
    assert code == 1
    assert "cannot reach the controller" in err
