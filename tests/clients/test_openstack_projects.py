"""Project isolation with the real ``openstack`` CLI and tokens of two projects:
each sees its own networks and ports plus the admin's shared public network,
another project's port is "not found", and binding:host_id is the admin's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients.test_openstack_token import openstack as run
from tests.clients.test_openstack_token import token_server

ADMIN = "projects-admin-token-0123456789"
ALICE = "projects-alice-token-0123456789"
BOB = "projects-bob-token-01234567890"


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    lines = f"{ADMIN} admin admin\n{ALICE} alice member\n{BOB} bob member\n"
    with token_server(tmp_path, lines) as found:
        yield found


def ok(url: str, token: str, *args: str) -> dict | list:
    done = run(url, token, *args, "-f", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_two_projects_and_a_shared_public_network(url: str) -> None:
    ok(url, ADMIN, "network", "create", "--share", "--external", "public")
    ok(url, ADMIN, "subnet", "create", "--network", "public", "--subnet-range",
       "203.0.113.0/24", "public-v4")  # fmt: skip
    for token, name, cidr in ((ALICE, "a-net", "10.1.0.0/24"), (BOB, "b-net", "10.2.0.0/24")):
        ok(url, token, "network", "create", name)
        ok(url, token, "subnet", "create", "--network", name, "--subnet-range", cidr, name)
    bob_port = ok(url, BOB, "port", "create", "--network", "b-net", "bob-vm")
    alice_public = ok(url, ALICE, "port", "create", "--network", "public", "alice-vm")
    assert alice_public["fixed_ips"][0]["ip_address"].startswith("203.0.113.")

    assert {n["Name"] for n in ok(url, ALICE, "network", "list")} == {"a-net", "public"}
    assert [p["Name"] for p in ok(url, ALICE, "port", "list")] == ["alice-vm"]
    hidden = run(url, ALICE, "port", "show", bob_port["id"])
    assert hidden.returncode != 0 and "No Port found" in hidden.stderr, hidden.stderr
    refused = run(url, ALICE, "port", "create", "--network", bob_port["network_id"], "x")
    assert refused.returncode != 0
    refused = run(url, ALICE, "port", "set", "--host", "compute-1", "alice-vm")
    assert refused.returncode != 0 and "policy" in refused.stderr, refused.stderr
    assert run(url, ADMIN, "port", "set", "--host", "compute-1", alice_public["id"]).returncode == 0
    assert ok(url, ADMIN, "port", "show", alice_public["id"])["binding_host_id"] == "compute-1"
    assert "binding_host_id" not in {
        k for k, v in ok(url, ALICE, "port", "show", "alice-vm").items() if v
    }
