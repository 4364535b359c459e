"""/metrics, /healthz and /readyz: the controller's (over a real server with token auth)
and an agent's (its loopback HTTP server), parsed with prometheus_client's parser."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from l3fabric.agent import status_http
from l3fabric.agent.execute import PassMetrics, StepMetrics
from l3fabric.api.app import create_app
from l3fabric.auth.tokens import TokenAuth
from l3fabric.gateway.agent import GatewayAgent
from l3fabric.store.sqlite import SqliteStore
from tests.clients.server import running_server

ADMIN = "admin-token-0123456789"


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a Prometheus page by (name, labels); raises if the page does not parse."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def controller(tmp_path: Path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{ADMIN} admin admin\n")
    store = SqliteStore(tmp_path / "db")
    with running_server(create_app(store, authenticator=TokenAuth(tokens))) as url:
        yield url, store
    store.close()


def test_controller_counts_requests_by_route_and_status(controller) -> None:
    url, _ = controller
    admin = {"X-Auth-Token": ADMIN}
    with httpx.Client(base_url=url) as http:
        assert http.put("/v1/hosts/h1", json={"router_id": "10.0.0.1", "address": "10.0.0.1"},
                        headers=admin).status_code == 201  # fmt: skip
        assert http.get("/v1/hosts/h1", headers=admin).status_code == 200
        assert http.get("/v1/hosts/nope", headers=admin).status_code == 404
        assert http.get("/v1/hosts").status_code == 401  # no token
        page = http.get("/metrics")  # no token needed
    assert page.status_code == 200
    found = samples(page.text)
    route = "/v1/hosts/{name}"
    key = "l3fabric_api_requests_total"
    assert found[(key, frozenset({("method", "GET"), ("route", route), ("status", "200")}))] == 1
    assert found[(key, frozenset({("method", "GET"), ("route", route), ("status", "404")}))] == 1
    assert (
        found[(key, frozenset({("method", "GET"), ("route", "unmatched"), ("status", "401")}))] == 1
    )
    assert found[("l3fabric_store_seconds_count", frozenset({("op", "get")}))] >= 2
    assert found[("l3fabric_watch_clients", frozenset())] == 0


def test_controller_watch_is_counted_while_open(controller) -> None:
    url, _ = controller
    admin = {"X-Auth-Token": ADMIN}
    params = {"host": "h1", "since": 0, "timeout": 3}
    clients = ("l3fabric_watch_clients", frozenset())
    with httpx.Client(base_url=url, headers=admin) as http:
        poll = threading.Thread(target=lambda: httpx.get(f"{url}/v1/watch", params=params,
                                                         headers=admin, timeout=10))  # fmt: skip
        poll.start()
        deadline = time.monotonic() + 3
        while samples(http.get("/metrics").text)[clients] != 1:
            assert time.monotonic() < deadline, "the open watch was never counted"
            time.sleep(0.05)
        poll.join(10)
        found = samples(http.get("/metrics").text)
    assert found[("l3fabric_watch_lag_revisions_count", frozenset())] == 1
    assert found[clients] == 0


def test_controller_health_and_readiness(controller) -> None:
    url, store = controller
    with httpx.Client(base_url=url) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
        store.close()  # the store is gone: alive, but not ready
        assert http.get("/healthz").status_code == 200
        ready = http.get("/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "store unavailable"


def test_gateway_agent_metrics_and_health(tmp_path: Path) -> None:
    agent = GatewayAgent("gw1", "http://127.0.0.1:9", tmp_path)
    agent.last_bgp = [
        {"name": "h:h1", "state": "up", "info": "Established", "routes_in": 4, "routes_out": 1,
         "rejected": 2},
        {"name": "u:isp", "state": "start", "info": "Active Socket: Connection refused"},
    ]  # fmt: skip
    agent.last_nat = {
        "conntrack_entries": 7,
        "conntrack_stats": {"insert_failed": 1, "drop": 0, "early_drop": 0, "error": 0},
    }
    metrics = PassMetrics(number=1, kind="full", seconds=0.02)
    metrics.steps["nat"] = StepMetrics(seconds=0.004, ops=1)
    metrics.steps["bird"] = StepMetrics(errors=["bird: configure failed"])
    agent.publish(metrics, "test")
    with status_http.serving(
        ("127.0.0.1", 0), agent.metrics.registry, agent.healthy, agent.ready
    ) as server:
        assert server is not None
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with httpx.Client(base_url=url) as http:
            page = http.get("/metrics")
            healthz, readyz = http.get("/healthz"), http.get("/readyz")
    found = samples(page.text)
    assert found[("l3fabric_agent_bgp_sessions", frozenset({("state", "Established")}))] == 1
    assert found[("l3fabric_agent_bgp_sessions", frozenset({("state", "Active")}))] == 1
    assert found[("l3fabric_agent_bgp_routes", frozenset({("direction", "imported")}))] == 4
    assert found[("l3fabric_agent_rejected_routes", frozenset())] == 2
    assert found[("l3fabric_agent_passes_total", frozenset({("result", "error")}))] == 1
    assert found[("l3fabric_agent_pass_seconds_count", frozenset({("kind", "full")}))] == 1
    nft = ("l3fabric_agent_nftables_transaction_seconds_count", frozenset({("table", "nat")}))
    assert found[nft] == 1
    assert found[("l3fabric_gateway_conntrack_entries", frozenset())] == 7
    failures = ("l3fabric_gateway_conntrack_failures", frozenset({("counter", "insert_failed")}))
    assert found[failures] == 1
    assert healthz.status_code == 200
    assert readyz.status_code == 503  # no snapshot from the controller yet


def test_a_taken_metrics_port_does_not_stop_the_agent(tmp_path: Path) -> None:
    agent = GatewayAgent("gw1", "http://127.0.0.1:9", tmp_path)
    args = (agent.metrics.registry, agent.healthy, agent.ready)
    with status_http.serving(("127.0.0.1", 0), *args) as first:
        assert first is not None
        with status_http.serving(first.server_address[:2], *args) as second:
            assert second is None


@pytest.mark.parametrize("text", ["9180", "host:port", "127.0.0.1:70000"])
def test_bad_metrics_listen_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        status_http.parse_listen(text)


def test_agent_health_is_the_loop_turning_and_readiness_the_first_pass(tmp_path: Path) -> None:
    agent = GatewayAgent("gw1", "http://127.0.0.1:9", tmp_path, resync_interval=10)
    assert agent.healthy()[0] is True
    agent.loop_at = time.monotonic() - 31  # no turn of the loop in three intervals
    ok, body = agent.healthy()
    assert ok is False and body["status"] == "stuck"
    assert agent.ready()[0] is False
    agent.watcher.synced.set()
    agent.passes = 1
    assert agent.ready() == (True, {"status": "ready", "passes": 1, "errors": []})
