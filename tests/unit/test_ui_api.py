"""/ui (the page, open to all) and the reads it is made of: /v1/health and /v1/trace."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pytest

from l3fabric.api.app import create_app
from l3fabric.auth.tokens import TokenAuth
from l3fabric.store.sqlite import SqliteStore
from tests.unit.api_helpers import error

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ADMIN = "admin-token-0123456789"
MEMBER = "member-token-0123456789"


@pytest.fixture
def tokens_client(tmp_path: Path):
    (tmp_path / "tokens").write_text(f"{ADMIN} admin admin\n{MEMBER} demo member\n")
    store = SqliteStore(tmp_path / "db")
    with TestClient(create_app(store, authenticator=TokenAuth(tmp_path / "tokens"))) as c:
        yield c
    store.close()


def test_page_and_assets_need_no_token_and_ship_in_the_package(tokens_client) -> None:
    page = tokens_client.get("/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/ui/app.js">' in page.text and "http" not in page.text.split("<body>")[1]
    for asset, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        r = tokens_client.get(f"/ui/{asset}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
    assert error(tokens_client.get("/ui/secrets.txt"), 404) == "NotFound"
    # A path out of the page's files is not served (401: it is no page path at all).
    r = tokens_client.get("/ui/..%2Fapi%2Fui.py")
    assert r.status_code in (401, 404) and "def install" not in r.text


def test_health_and_trace_are_admin_only(tokens_client) -> None:
    for path in ("/v1/health", "/v1/trace?query=10.0.0.1"):
        assert error(tokens_client.get(path), 401) == "HTTPUnauthorized"
        r = tokens_client.get(path, headers={"X-Auth-Token": MEMBER})
        assert error(r, 403) == "HTTPForbidden"


def test_health_reports_a_registered_host_that_never_reported(client) -> None:
    client.put("/v1/hosts/h1", json={"router_id": "10.0.0.11", "address": "10.0.0.11"})
    body = client.get("/v1/health").json()
    assert body["degraded"] is True
    (node,) = body["nodes"]
    assert (node["kind"], node["name"], node["up"]) == ("host", "h1", False)
    assert node["problems"] == ["agent never reported"]


def test_health_turns_down_after_two_missed_heartbeats(client, monkeypatch) -> None:
    client.put("/v1/hosts/h1", json={"router_id": "10.0.0.11", "address": "10.0.0.11"})
    client.post("/v1/hosts/h1/heartbeat", json={})
    (node,) = client.get("/v1/health").json()["nodes"]
    assert node["up"] is True
    later = time.time() + 2 * 2.0 + 0.1  # two 2-s intervals without a heartbeat
    monkeypatch.setattr(time, "time", lambda: later)
    (node,) = client.get("/v1/health").json()["nodes"]
    assert node["up"] is False


def test_trace_finds_a_port_by_address_and_checks_the_query(client) -> None:
    net = client.post("/v2.0/networks", json={"network": {"name": "priv"}}).json()["network"]
    client.post(
        "/v2.0/subnets",
        json={"subnet": {"network_id": net["id"], "cidr": "10.1.0.0/24", "ip_version": 4}},
    )
    port = client.post(
        "/v2.0/ports",
        json={"port": {"network_id": net["id"], "device_id": "vm-1", "binding:host_id": "h1"}},
    ).json()["port"]
    address = port["fixed_ips"][0]["ip_address"]
    (entry,) = client.get("/v1/trace", params={"query": address}).json()["trace"]
    assert (entry["port"], entry["network"], entry["host"]) == (port["id"], "priv", "h1")
    assert (
        client.get("/v1/trace", params={"query": "vm-1"}).json()["trace"][0]["port"] == port["id"]
    )
    assert client.get("/v1/trace", params={"query": "10.9.9.9"}).json() == {"trace": []}
    for bad in ("", " ", "x" * 256):
        assert error(client.get("/v1/trace", params={"query": bad}), 400) == "InvalidInput"
    assert client.get("/v1/trace").status_code == 400
