"""Bad input is a 4xx on both APIs, is never stored, and nothing stored fails a read.

Regression tests for the fuzz findings of issue 9 (parts 3 and 4): lone
surrogates, NaN/Infinity, deep nesting, odd integers in queries and If-Match,
and the connection after a 500.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from l3fabric import keys
from l3fabric.api.app import create_app
from l3fabric.api.body import MAX_DEPTH
from l3fabric.api.jsontext import dumps
from l3fabric.store.sqlite import SqliteStore

from .api_helpers import error, make
from .test_fabric_api import HOST

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

GATEWAY = {"router_id": "10.0.0.1", "fabric_addresses": ["10.0.0.1"]}
JSON_TYPE = {"content-type": "application/json"}
LONE = "\\ud800"  # a JSON escape that decodes to a lone surrogate


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "db")
    yield s
    s.close()


@pytest.fixture
def api(store: SqliteStore) -> Iterator[TestClient]:
    with TestClient(create_app(store), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def fabric(api: TestClient) -> dict[str, str]:
    """A network, a subnet, a registered host and gateway; their ids."""
    net = make(api, "networks", "network")
    sub = make(api, "subnets", "subnet", network_id=net["id"], cidr="10.1.0.0/24")
    assert api.put("/v1/hosts/h1", json=HOST).status_code == 201
    assert api.put("/v1/gateways/gw1", json=GATEWAY).status_code == 201
    return {"network": net["id"], "subnet": sub["id"]}


def send(api: TestClient, method: str, path: str, text: str, **headers: str):
    return api.request(method, path, content=text.encode(), headers={**JSON_TYPE, **headers})


def reads_are_fine(api: TestClient) -> None:
    """Every read an agent or a client makes answers 200 with valid JSON."""
    snapshot = api.get("/v1/watch", params={"host": "h1"})
    for response in (
        api.get("/v2.0/ports"),
        api.get("/v1/hosts"),
        api.get("/v1/gateways"),
        api.get("/v1/anycast"),
        snapshot,
        api.get("/v1/watch", params={"host": "h1", "since": 0, "timeout": 0}),
        api.get("/v1/watch", params={"host": "gw1", "since": 0, "timeout": 0}),
    ):
        assert response.status_code == 200, (response.request.url, response.text)
        json.loads(response.content.decode("utf-8"), parse_constant=pytest.fail)


# Part 3: one bad value must not poison reads ---------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/v2.0/ports", '{"port": {"network_id": "NET", "binding:host_id": "h1",'
         ' "binding:profile": {"a": "LONE"}}}'),
        ("post", "/v2.0/ports", '{"port": {"network_id": "NET", "binding:profile": {"LONE": 1}}}'),
        ("post", "/v1/hosts/h1/heartbeat", '{"agent": {"version": "LONE"}}'),
        ("post", "/v1/hosts/h1/heartbeat", '{"agent": {"LONE": "x"}}'),
        ("post", "/v1/gateways/gw1/heartbeat", '{"nat": {"LONE": 1}}'),
        ("post", "/v1/gateways/gw1/heartbeat", '{"anycast": {"prefixes": ["LONE"]}}'),
        ("post", "/v1/anycast", '{"name": "g", "subnet_id": "SUB", "address": "LONE"}'),
        ("put", "/v1/hosts/h2", '{"router_id": "10.0.0.12", "address": "10.0.0.12",'
         ' "rack": "LONE"}'),
    ],
)  # fmt: skip
def test_lone_surrogate_is_refused_and_reads_stay_fine(
    api: TestClient, store: SqliteStore, fabric: dict[str, str], method: str, path: str, body: str
) -> None:
    revision = store.revision()
    text = body.replace("NET", fabric["network"]).replace("SUB", fabric["subnet"])
    answer = send(api, method, path, text.replace("LONE", LONE))
    assert error(answer, 400) == "MalformedRequestBody"
    assert "surrogate" in answer.json()["NeutronError"]["message"]
    assert store.revision() == revision  # nothing stored
    reads_are_fine(api)


def test_a_valid_surrogate_pair_is_text(api: TestClient, fabric: dict[str, str]) -> None:
    body = json.dumps({"port": {"network_id": fabric["network"], "name": "PAIR"}})
    body = body.replace("PAIR", "\\ud83d\\ude00")
    answer = send(api, "post", "/v2.0/ports", body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["port"]["name"] == "\U0001f600"


def test_values_stored_before_the_checks_do_not_fail_reads(
    api: TestClient, store: SqliteStore, fabric: dict[str, str]
) -> None:
    """Rows poisoned by an older server (lone surrogates, NaN, nesting deeper than
    encoders manage) are read degraded, not as a 500, and the watch goes on."""
    deep: list = []
    for _ in range(400):
        deep = [deep]
    port = make(api, "ports", "port", network_id=fabric["network"], **{"binding:host_id": "h1"})
    port["binding:profile"] = {"bad\ud800": "x\udfff", "nan": math.nan, "deep": deep}
    store.put(keys.neutron_key("ports", port["id"]), port)
    store.put("/fabric/status/hosts/h1", {"heartbeat_at": 1.0, "agent": {"v": "\ud800"}})
    store.put("/fabric/status/gateways/gw1", {"heartbeat_at": 1.0, "nat": {"\udc00": math.inf}})
    reads_are_fine(api)
    profile = api.get(f"/v2.0/ports/{port['id']}").json()["port"]["binding:profile"]
    assert profile["bad\ufffd"] == "x\ufffd" and profile["nan"] is None
    watched = api.get("/v1/watch", params={"host": "h1", "since": 0, "timeout": 0}).json()
    assert any(e["id"] == port["id"] for e in watched["events"])
    assert api.get("/v1/hosts/h1").json()["agent"] == {"v": "\ufffd"}


def test_dumps_degrades_instead_of_failing() -> None:
    assert json.loads(dumps({"a\ud800": [math.nan, -math.inf, "ok"]})) == {
        "a\ufffd": [None, None, "ok"]
    }


# Part 4: no 500 for bad input ----------------------------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/v2.0/networks"), ("put", "/v1/fabric"), ("post", "/v1/hosts/h1/heartbeat")],
)
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 400, 50_000])  # 50,000 fits the body limit
def test_deep_nesting_is_refused_alike_on_both_apis(
    api: TestClient, fabric: dict[str, str], method: str, path: str, depth: int
) -> None:
    answer = send(api, method, path, nested(depth))
    assert error(answer, 400) == "MalformedRequestBody"
    assert f"deeper than {MAX_DEPTH}" in answer.json()["NeutronError"]["message"]
    # At the limit the body is parsed and refused for what it is (not an object).
    at_limit = send(api, method, path, nested(MAX_DEPTH))
    assert error(at_limit, 400) and "deeper" not in at_limit.json()["NeutronError"]["message"]


def test_a_heartbeat_nested_400_deep_is_a_400(api: TestClient, fabric: dict[str, str]) -> None:
    body = json.dumps({"agent": {"a": "DEEP"}}).replace('"DEEP"', nested(400))
    assert error(send(api, "post", "/v1/hosts/h1/heartbeat", body), 400) == "MalformedRequestBody"
    reads_are_fine(api)


@pytest.mark.parametrize(
    ("path", "envelope", "attrs"),
    [
        ("/v2.0/subnets", "subnet", {"cidr": "LONE"}),
        ("/v2.0/subnets", "subnet", {"cidr": "10.2.0.0/24", "gateway_ip": "LONE"}),
        ("/v2.0/ports", "port", {"mac_address": "LONE"}),
        ("/v2.0/ports", "port", {"fixed_ips": [{"ip_address": "LONE"}]}),
        ("/v2.0/security-group-rules", "security_group_rule", {"remote_ip_prefix": "LONE"}),
        ("/v2.0/networks", "network", {"name": "LONE"}),
    ],
)
def test_lone_surrogate_in_a_validated_string_is_a_400(
    api: TestClient, fabric: dict[str, str], path: str, envelope: str, attrs: dict
) -> None:
    body = json.dumps({envelope: {"network_id": fabric["network"], **attrs}})
    answer = send(api, "post", path, body.replace("LONE", LONE))
    assert error(answer, 400) == "MalformedRequestBody"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("post", "/v2.0/ports", '{"port": {"network_id": "NET", "binding:profile": {"x": C}}}'),
        ("post", "/v2.0/networks", '{"network": {"mtu": C}}'),
        ("post", "/v1/hosts/h1/heartbeat", '{"agent": {"load": C}}'),
        ("post", "/v1/gateways/gw1/heartbeat", '{"nat": {"rate": C}}'),
        ("put", "/v1/fabric", '{"heartbeat_interval_s": C}'),
    ],
)
def test_nan_and_infinity_are_not_json(
    api: TestClient,
    store: SqliteStore,
    fabric: dict[str, str],
    constant: str,
    method: str,
    path: str,
    template: str,
) -> None:
    revision = store.revision()
    body = template.replace("NET", fabric["network"]).replace("C", constant)
    assert error(send(api, method, path, body), 400) == "MalformedRequestBody"
    assert store.revision() == revision
    reads_are_fine(api)


@pytest.mark.parametrize("value", ["\u0661", "\u00b2", "--5", "-", "1.5", "9" * 5000, "0x10"])
@pytest.mark.parametrize("name", ["limit", "mtu", "revision_number"])
def test_integer_queries_take_only_ascii_digits(
    api: TestClient, fabric: dict[str, str], name: str, value: str
) -> None:
    assert error(api.get("/v2.0/networks", params={name: value}), 400) == "InvalidInput"


def test_integer_filters_still_filter(api: TestClient, fabric: dict[str, str]) -> None:
    for query, count in (({"mtu": "1500"}, 1), ({"mtu": "-1"}, 0), ({"limit": "0"}, 1)):
        assert len(api.get("/v2.0/networks", params=query).json()["networks"]) == count
    rules = api.get("/v2.0/security-group-rules", params={"protocol": "\u00b2"})
    assert rules.status_code == 200  # protocol is a name or a number: no match, no 500


@pytest.mark.parametrize(
    "header", ["revision_number=" + "9" * 5000, "revision_number=\u0661", "revision_number=-1", "7"]
)
@pytest.mark.parametrize("method", ["put", "delete"])
def test_malformed_if_match_is_a_400(
    api: TestClient, fabric: dict[str, str], header: str, method: str
) -> None:
    path = f"/v2.0/networks/{fabric['network']}"
    body = '{"network": {"name": "x"}}' if method == "put" else ""
    answer = api.request(
        method, path, content=body.encode(), headers={**JSON_TYPE, "If-Match": header.encode()}
    )
    assert error(answer, 400) == "InvalidInput"
    stale = api.request(
        method, path, content=body.encode(), headers={**JSON_TYPE, "If-Match": "revision_number=9"}
    )
    assert error(stale, 412) == "RevisionNumberConstraintFailed"


def test_a_500_closes_the_connection(store: SqliteStore) -> None:
    """Starlette re-raises after the 500 answer and uvicorn drops the connection:
    the answer must say so, or a keep-alive client meets a reset."""
    app: FastAPI = create_app(store)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("deliberate")

    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/boom")
        assert error(answer, 500) == "InternalError"
        assert answer.headers["connection"] == "close"
        assert client.get("/v1/fabric").headers.get("connection") != "close"


@pytest.mark.parametrize(
    "query",
    ["since=\u0661", "since=--5", "since=" + "9" * 5000, "since=1e3", "since=0&timeout=\u0661"],
)
def test_odd_watch_numbers_are_invalid_input(api: TestClient, query: str) -> None:
    assert error(api.get(f"/v1/watch?host=h1&{query}"), 400) == "InvalidInput"
