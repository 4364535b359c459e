"""--auth tokens over the real app: 401 before anything is processed, admin vs
member vs agent (host:NAME, gateway:NAME) on /v1 and /v2.0, the token file."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from l3fabric import keys
from l3fabric.api.app import create_app
from l3fabric.auth.tokens import TokenAuth, TokenFileError, parse_token_file
from l3fabric.service.anycast import STATUS_PREFIX
from l3fabric.store.sqlite import SqliteStore
from tests.unit.api_helpers import error

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ADMIN = "admin-token-0123456789"
MEMBER = "member-token-0123456789"
H1 = "host-h1-token-0123456789"
GW1 = "gateway-gw1-token-012345"
TOKENS = f"""\
# the lab's credentials
{ADMIN} admin admin
{MEMBER}   demo   member,reader   # a project's user

{H1} services host:h1
{GW1} services gateway:gw1
"""
HOST = {"router_id": "10.0.0.11", "address": "10.0.0.11"}


@pytest.fixture
def store(tmp_path: Path):
    store = SqliteStore(tmp_path / "db")
    yield store
    store.close()


@pytest.fixture
def app_client(tmp_path: Path, store: SqliteStore):
    path = tmp_path / "tokens"
    path.write_text(TOKENS)
    with TestClient(create_app(store, authenticator=TokenAuth(path))) as c:
        yield c


def as_(token: str) -> dict[str, str]:
    return {"X-Auth-Token": token}


def test_no_or_wrong_token_is_401_and_nothing_is_stored(app_client, store) -> None:
    for headers in ({}, as_("wrong-token-0123456789"), as_(ADMIN[:-1]), as_("")):
        r = app_client.post("/v2.0/networks", json={"network": {"name": "x"}}, headers=headers)
        assert error(r, 401) == "HTTPUnauthorized"
        r = app_client.put("/v1/hosts/h9", json=HOST, headers=headers)
        assert error(r, 401) == "HTTPUnauthorized"
        assert error(app_client.get("/v1/watch?host=h1", headers=headers), 401)
    assert store.range("")[0] == []  # nothing was written
    # The body is never read: a malformed one still gets the 401, not a 400.
    r = app_client.post("/v2.0/networks", content=b"{not json", headers={})
    assert error(r, 401) == "HTTPUnauthorized"
    # Like Neutron's, the version document is open.
    assert app_client.get("/").status_code == 200


def test_admin_may_do_everything(app_client) -> None:
    r = app_client.post("/v2.0/networks", json={"network": {"name": "x"}}, headers=as_(ADMIN))
    assert r.status_code == 201, r.text
    assert r.json()["network"]["project_id"] == "admin"
    assert app_client.put("/v1/hosts/h1", json=HOST, headers=as_(ADMIN)).status_code == 201
    assert app_client.get("/v1/watch?host=h7", headers=as_(ADMIN)).status_code == 200


def test_member_uses_v2_in_its_project_but_not_the_fabric_api(app_client) -> None:
    r = app_client.post("/v2.0/networks", json={"network": {"name": "x"}}, headers=as_(MEMBER))
    assert r.status_code == 201, r.text
    assert r.json()["network"]["project_id"] == "demo"
    for method, path in (
        ("PUT", "/v1/fabric"),
        ("PUT", "/v1/hosts/h1"),
        ("DELETE", "/v1/gateways/gw1"),
        ("GET", "/v1/watch?host=h1"),
        ("POST", "/v1/anycast"),
    ):
        r = app_client.request(method, path, json={}, headers=as_(MEMBER))
        assert error(r, 403) == "HTTPForbidden", (method, path)


def test_host_agent_reads_its_own_state_and_beats_as_itself(app_client, store) -> None:
    assert app_client.put("/v1/hosts/h1", json=HOST, headers=as_(ADMIN)).status_code == 201
    h1 = as_(H1)
    assert app_client.get("/v1/watch?host=h1", headers=h1).status_code == 200
    assert app_client.get("/v1/fabric", headers=h1).status_code == 200
    assert app_client.get("/v1/hosts/h1", headers=h1).status_code == 200
    assert app_client.get("/v1/gateways", headers=h1).status_code == 200
    beat = app_client.post("/v1/hosts/h1/heartbeat", json={"agent": {}}, headers=h1)
    assert beat.status_code == 200, beat.text
    refused = [
        ("GET", "/v1/watch?host=h2"),
        ("GET", "/v1/watch?host=h1&host=h2"),
        ("POST", "/v1/hosts/h2/heartbeat"),
        ("POST", "/v1/gateways/h1/heartbeat"),
        ("PUT", "/v1/hosts/h1"),
        ("DELETE", "/v1/hosts/h1"),
        ("PUT", "/v1/fabric"),
        ("GET", "/v2.0/networks"),
        ("GET", "/v2.0/ports"),
        ("POST", "/v1/anycast"),
    ]
    for method, path in refused:
        r = app_client.request(method, path, json={}, headers=h1)
        assert error(r, 403) == "HTTPForbidden", (method, path)
    assert store.get(keys.host_key("h1")) is not None  # still registered


def test_gateway_agent_has_its_own_watch_and_heartbeat_only(app_client) -> None:
    gw = as_(GW1)
    assert app_client.get("/v1/watch?host=gw1", headers=gw).status_code == 200
    body = {"fabric_addresses": ["10.0.0.1"], "router_id": "10.0.0.1"}
    assert app_client.put("/v1/gateways/gw1", json=body, headers=as_(ADMIN)).status_code == 201
    r = app_client.post("/v1/gateways/gw1/heartbeat", json={}, headers=gw)
    assert r.status_code == 200, r.text
    for method, path in (
        ("GET", "/v1/watch?host=h1"),
        ("POST", "/v1/gateways/gw2/heartbeat"),
        ("POST", "/v1/hosts/gw1/heartbeat"),
        ("PUT", "/v1/gateways/gw1"),
        ("GET", "/v2.0/networks"),
    ):
        r = app_client.request(method, path, json={}, headers=gw)
        assert error(r, 403) == "HTTPForbidden", (method, path)


def test_host_reports_status_only_for_its_own_ports(app_client, store) -> None:
    admin = as_(ADMIN)
    net = app_client.post("/v2.0/networks", json={"network": {}}, headers=admin).json()["network"]
    sub = {"network_id": net["id"], "cidr": "10.0.0.0/29", "ip_version": 4}
    subnet = app_client.post("/v2.0/subnets", json={"subnet": sub}, headers=admin).json()
    ports = {}
    for host in ("h1", "h2"):
        body = {"port": {"network_id": net["id"], "binding:host_id": host}}
        ports[host] = app_client.post("/v2.0/ports", json=body, headers=admin).json()["port"]["id"]
    group = {"name": "g", "subnet_id": subnet["subnet"]["id"], "members": list(ports.values())}
    gid = app_client.post("/v1/anycast", json=group, headers=admin).json()["id"]

    def report(host: str, port: str) -> object:
        body = {"host": host, "members": {port: "healthy"}}
        return app_client.post(f"/v1/anycast/{gid}/status", json=body, headers=as_(H1))

    assert report("h1", ports["h1"]).status_code == 200
    assert error(report("h1", ports["h2"]), 403) == "HTTPForbidden"
    assert error(report("h2", ports["h2"]), 403) == "HTTPForbidden"
    assert store.get(f"{STATUS_PREFIX}{gid}/h2") is None
    # Port statuses in a heartbeat apply to ports bound to the beating host only.
    assert app_client.put("/v1/hosts/h1", json=HOST, headers=admin).status_code == 201
    beat = {"ports": {ports["h1"]: "ACTIVE", ports["h2"]: "ACTIVE"}}
    r = app_client.post("/v1/hosts/h1/heartbeat", json=beat, headers=as_(H1))
    assert r.json()["ports_changed"] == [ports["h1"]]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("short admin admin\n", "line 1: the token is shorter than 16"),
        ("# c\n\nabcdefghijklmnopq admin\n", "line 3: expected TOKEN PROJECT_ID ROLES"),
        ("abcdefghijklmnopq admin ad min\n", "line 1: expected TOKEN PROJECT_ID ROLES, got 4"),
        ("abcdefghijklmnopq p vm:h1\n", "line 1: role 'vm:h1'"),
        ("abcdefghijklmnopq p host:\n", "line 1: role 'host:'"),
        ("abcdefghijklmnopq p a\nabcdefghijklmnopq q b\n", "line 2: this token is already"),
    ],
)
def test_bad_token_files_name_the_line(text: str, words: str) -> None:
    with pytest.raises(TokenFileError, match=words):
        parse_token_file(text, "tokens")
