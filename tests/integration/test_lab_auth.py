"""The lab runs the secure path: --auth tokens, one credential per agent (docs/security.md)."""

from __future__ import annotations

import time

import httpx
import pytest

from l3fabric.credentials import read_token
from l3fabric.lab.credentials import agent_token_file

from .lab_fixtures import lab_factory, needs_root  # noqa: F401  (lab_factory: a fixture)

pytestmark = [pytest.mark.integration, needs_root]


def test_lab_agents_use_their_own_credentials_and_nothing_else(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("racks: [{name: r1, hosts: 2, tor: false}]")
    url = lab.plan.api_url()
    assert httpx.get(f"{url}/v2.0/networks").status_code == 401
    assert httpx.get(f"{url}/v1/watch", params={"host": "r1-h1"}).status_code == 401
    # Both agents reach the controller with their own tokens: they beat as themselves.
    deadline = time.monotonic() + 20
    with lab.client() as client:
        while {client.get_host(h).get("status") for h in ("r1-h1", "r1-h2")} != {"up"}:
            assert time.monotonic() < deadline, client.list_hosts()
            time.sleep(0.2)
    h1 = {"X-Auth-Token": read_token(agent_token_file(lab.state, "r1-h1"))}
    assert httpx.get(f"{url}/v1/watch", params={"host": "r1-h1"}, headers=h1).status_code == 200
    refused = [
        ("GET", "/v1/watch?host=r1-h2"),
        ("POST", "/v1/hosts/r1-h2/heartbeat"),
        ("PUT", "/v1/fabric"),
        ("PUT", "/v1/hosts/r1-h9"),
        ("GET", "/v2.0/ports"),
    ]
    for method, path in refused:
        r = httpx.request(method, f"{url}{path}", json={}, headers=h1)
        assert r.status_code == 403, (method, path, r.text)
