"""FabricClient and HostStateWatcher against the real /v1 API served by uvicorn on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from l3fabric import keys
from l3fabric.client import (
    ApiError,
    ControllerUnavailable,
    FabricClient,
    HostState,
    HostStateWatcher,
    ResyncRequired,
)
from l3fabric.server import Listen, bind
from l3fabric.store.sqlite import SqliteStore

from .test_fabric_api import HOST, fabric_app, port


class LoopbackServer:
    """The fabric API on 127.0.0.1:PORT in a thread; can be stopped and started again."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        # The same port again after a restart; bound the way `l3fabric server` binds.
        sock = bind(Listen("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        app = fabric_app(self.store)
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        config.timeout_graceful_shutdown = 1
        self._server = uvicorn.Server(config)
        self._app, self._sock = app, sock
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]})
        self._thread.start()
        wait_for(lambda: self._server.started, 10, "uvicorn did not start")

    def stop(self) -> None:
        if self._server is None:
            return
        self._app.state.stopping.set()  # ends long polls, as `l3fabric server` does
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()
        self._server = None


def wait_for(condition: Callable[[], object], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.01)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "fabric.db")
    yield s
    s.close()


@pytest.fixture
def server(store: SqliteStore) -> Iterator[LoopbackServer]:
    srv = LoopbackServer(store)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server: LoopbackServer) -> Iterator[FabricClient]:
    with FabricClient(server.url, timeout=5) as c:
        yield c


@pytest.fixture
def watchers(server: LoopbackServer) -> Iterator[Callable[..., HostStateWatcher]]:
    started: list[HostStateWatcher] = []

    def make(host: str, **options) -> HostStateWatcher:
        watcher = HostStateWatcher(server.url, host, watch_timeout=5, **options).start()
        started.append(watcher)
        assert watcher.synced.wait(10), "no snapshot"
        return watcher

    yield make
    for watcher in started:
        watcher.stop()


# FabricClient ----------------------------------------------------------------------------


def test_client_registers_heartbeats_and_reads(client: FabricClient, store: SqliteStore) -> None:
    client.register_host("h1", rack="r1", **HOST)
    store.put(keys.neutron_key("ports", "p1"), port("p1", "h1"))
    assert client.heartbeat("h1", ports={"p1": "ACTIVE"})["ports_changed"] == ["p1"]
    assert client.get_host("h1")["status"] == "up"
    client.register_gateway("gw1", router_id="10.0.0.1", fabric_addresses=["10.0.0.1"])
    assert [g["name"] for g in client.list_gateways()] == ["gw1"]
    assert client.set_fabric({"peering": "mesh"})["peering"] == "mesh"
    assert client.get_fabric()["peering"] == "mesh"
    snap = client.snapshot("h1")
    assert [p["status"] for p in snap["ports"]] == ["ACTIVE"]
    assert client.watch("h1", snap["revision"], timeout=0.2)["events"] == []


def test_client_turns_error_bodies_into_api_errors(client: FabricClient) -> None:
    with pytest.raises(ApiError) as caught:
        client.get_host("ghost")
    assert (caught.value.status, caught.value.type) == (404, "HostNotFound")
    assert "ghost" in caught.value.message
    with pytest.raises(ApiError) as caught:
        client.register_host("h1", router_id="not-an-ip", address="10.0.0.1")
    assert (caught.value.status, caught.value.type) == (400, "InvalidInput")


def test_client_raises_resync_required_on_410(client: FabricClient, store: SqliteStore) -> None:
    store.put("/neutron/networks/a", {"id": "a"})
    store.put("/neutron/networks/b", {"id": "b"})
    store.compact(store.revision())
    with pytest.raises(ResyncRequired):
        client.watch("h1", 1, timeout=1)


def test_client_unreachable_controller(server: LoopbackServer) -> None:
    server.stop()
    with FabricClient(server.url, timeout=1) as c, pytest.raises(ControllerUnavailable):
        c.get_fabric()


# HostStateWatcher ------------------------------------------------------------------------


def test_watcher_follows_ports_networks_and_fabric(
    watchers: Callable[..., HostStateWatcher], client: FabricClient, store: SqliteStore
) -> None:
    calls: list[int] = []
    watcher = watchers("h1", on_change=lambda: calls.append(1))
    assert watcher.state().ports == {}
    watcher.changed.clear()
    store.put(keys.neutron_key("networks", "net-1"), {"id": "net-1", "router:external": True})
    store.put(keys.neutron_key("ports", "p1"), port("p1", "h1"))
    client.set_fabric({"asn": 64700})
    wait_for(lambda: watcher.state().fabric["asn"] == 64700, 5, "fabric change not seen")
    state = watcher.state()
    assert set(state.ports) == {"p1"} and set(state.networks) == {"net-1"}
    assert watcher.changed.is_set() and calls
    store.delete(keys.neutron_key("ports", "p1"))
    wait_for(lambda: not watcher.state().ports, 5, "port delete not seen")


def test_watcher_names_the_ports_that_changed_since_the_last_look(
    watchers: Callable[..., HostStateWatcher], server: LoopbackServer, store: SqliteStore
) -> None:
    """What an incremental pass compares instead of every port: the ports the watch carried."""
    store.put(keys.neutron_key("ports", "p1"), port("p1", "h1"))
    store.put(keys.neutron_key("ports", "p2"), port("p2", "h1"))
    watcher = watchers("h1", backoff_initial=0.05, backoff_max=0.2)
    state, changed = watcher.state_and_changes()
    assert set(state.ports) == {"p1", "p2"} and changed is None  # the first look: unknown
    store.put(keys.neutron_key("ports", "p3"), port("p3", "h1"))
    store.delete(keys.neutron_key("ports", "p1"))
    wait_for(lambda: set(watcher.state().ports) == {"p2", "p3"}, 5, "changes not seen")
    state, changed = watcher.state_and_changes()
    assert changed == {"p1", "p3"} and set(state.ports) == {"p2", "p3"}
    assert watcher.state_and_changes()[1] == frozenset()  # each look starts the next count
    # After a snapshot (here: the watch resumed past a compacted history) it is unknown again.
    server.stop()
    store.put(keys.neutron_key("ports", "p4"), port("p4", "h1"))
    store.compact(store.revision())
    server.start()
    wait_for(lambda: "p4" in watcher.state().ports, 10, "no resync after compaction")
    assert watcher.state_and_changes()[1] is None


def test_watcher_port_moving_between_hosts(
    watchers: Callable[..., HostStateWatcher], store: SqliteStore
) -> None:
    key = keys.neutron_key("ports", "p1")
    store.put(key, port("p1", "h1"))
    h1, h2 = watchers("h1"), watchers("h2")
    assert set(h1.state().ports) == {"p1"} and h2.state().ports == {}
    store.put(key, port("p1", "h2"))
    wait_for(lambda: "p1" in h2.state().ports, 5, "h2 did not get the port")
    wait_for(lambda: "p1" not in h1.state().ports, 5, "h1 kept the port")


def test_watcher_resyncs_after_compaction(
    watchers: Callable[..., HostStateWatcher], server: LoopbackServer, store: SqliteStore
) -> None:
    store.put(keys.neutron_key("ports", "p1"), port("p1", "h1"))
    watcher = watchers("h1", backoff_initial=0.05, backoff_max=0.2)
    assert watcher.snapshots == 1
    server.stop()
    # While the watcher cannot see them, changes happen and their history is compacted away.
    store.delete(keys.neutron_key("ports", "p1"))
    store.put(keys.neutron_key("ports", "p2"), port("p2", "h1"))
    store.compact(store.revision())
    server.start()
    wait_for(lambda: set(watcher.state().ports) == {"p2"}, 10, "no resync after compaction")
    assert watcher.snapshots == 2


def test_watcher_backs_off_while_controller_is_down_then_recovers(
    watchers: Callable[..., HostStateWatcher], server: LoopbackServer, store: SqliteStore
) -> None:
    watcher = watchers("h1", backoff_initial=0.05, backoff_max=0.4)
    server.stop()
    time.sleep(2.0)
    assert not watcher.connected and watcher.last_error
    # Backoff 0.05 s doubling to 0.4 s (jitter x0.5-1) allows at most ~20 attempts in
    # 2 s; retrying without a pause would make thousands.
    assert 3 <= watcher.failures <= 25
    store.put(keys.neutron_key("ports", "p1"), port("p1", "h1"))
    server.start()
    wait_for(lambda: "p1" in watcher.state().ports, 10, "no recovery")
    assert watcher.connected and watcher.failures == 0
    assert watcher.snapshots == 1  # history was intact: resumed, no relist


def test_backoff_is_exponential_capped_and_jittered() -> None:
    watcher = HostStateWatcher("http://127.0.0.1:9", "h1", backoff_initial=0.1, backoff_max=1.0)
    for failures, ceiling in ((0, 0.1), (1, 0.2), (3, 0.8), (4, 1.0), (30, 1.0)):
        delays = {watcher._backoff(failures) for _ in range(50)}
        assert all(ceiling * 0.5 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jitter: many agents do not retry in step


def test_watcher_stop_returns_promptly_during_a_long_poll(server: LoopbackServer) -> None:
    watcher = HostStateWatcher(server.url, "h1", watch_timeout=50).start()
    assert watcher.synced.wait(10)
    time.sleep(0.2)  # now inside a 50 s long poll
    started = time.monotonic()
    watcher.stop()
    assert time.monotonic() - started < 1.0
    assert not watcher._thread.is_alive()


def closed_port() -> int:
    """A loopback port nothing listens on (just released by us)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_watcher_stop_returns_promptly_while_backing_off() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    watcher = HostStateWatcher(url, "h1", backoff_initial=30).start()
    time.sleep(0.3)
    started = time.monotonic()
    watcher.stop()
    assert time.monotonic() - started < 1.0
    assert not watcher.synced.is_set() and not watcher.connected


def test_a_reported_status_is_cached_but_needs_no_pass() -> None:
    """The statuses an agent reports come back by the watch: they must not wake it again."""
    state = HostState()
    port = {"id": "p1", "binding:host_id": "h1", "fixed_ips": [], "status": "DOWN",
            "revision_number": 1, "updated_at": "t1"}  # fmt: skip

    def put(obj: dict) -> bool:
        return state.apply("h1", {"type": "put", "kind": "port", "id": "p1", "object": obj})

    assert put(port) is True  # new port
    assert put({**port, "status": "ACTIVE", "revision_number": 2, "updated_at": "t2"}) is False
    assert state.ports["p1"]["status"] == "ACTIVE"  # the cache still follows
    assert put({**port, "status": "ACTIVE", "admin_state_up": False}) is True
    assert state.apply("h1", {"type": "delete", "kind": "port", "id": "p1", "object": None})
    assert not state.apply("h1", {"type": "delete", "kind": "port", "id": "p1", "object": None})


# Recovery without a 410 (fake transport) -------------------------------------------------


def _snapshot(revision: int, networks: list[dict]) -> dict:
    return {
        "revision": revision,
        "fabric": {},
        "host": None,
        "gateways": [],
        "hosts": [],
        "networks": networks,
        "subnets": [],
        "ports": [],
    }


@pytest.mark.parametrize(
    "broken",
    [
        httpx.Response(500, json={"NeutronError": {"type": "InternalError", "message": "x"}}),
        httpx.Response(200, content=b'{"revision": 6, "events": [{"kind"'),  # cut short
    ],
    ids=["500", "undecodable"],
)
def test_watcher_resyncs_by_itself_after_repeated_errors(broken: httpx.Response) -> None:
    """A watch that keeps failing from one revision (a poisoned change in the history)
    is not retried forever: the watcher takes a fresh snapshot, with no 410 needed."""
    snapshots = [_snapshot(5, []), _snapshot(9, [{"id": "n1"}])]
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        since = request.url.params.get("since")
        calls.append("snapshot" if since is None else f"watch {since}")
        if since is None:
            return httpx.Response(200, json=snapshots.pop(0) if snapshots else _snapshot(9, []))
        if since == "5":
            return broken
        return httpx.Response(200, json={"revision": int(since), "events": []})

    watcher = HostStateWatcher(
        "http://controller",
        "h1",
        watch_timeout=0.1,
        backoff_initial=0.01,
        backoff_max=0.02,
        resync_after=3,
        transport=httpx.MockTransport(handler),
    ).start()
    try:
        wait_for(lambda: "n1" in watcher.state().networks, 5, f"no resync: {calls}")
    finally:
        watcher.stop()
    assert calls[:5] == ["snapshot", "watch 5", "watch 5", "watch 5", "snapshot"]
    assert watcher.snapshots == 2 and watcher.state().revision == 9
