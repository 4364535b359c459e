"""Several controllers: the URL list, the client's failover, the watch's resume elsewhere."""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from l3fabric import keys
from l3fabric.client import ApiError, ControllerUnavailable, FabricClient, HostStateWatcher
from l3fabric.commands.agent import register
from l3fabric.commands.agent_runner import run_agent
from l3fabric.controllers import Controllers, ControllerUrlError, parse_urls
from l3fabric.store.sqlite import SqliteStore

from .test_client_watcher import LoopbackServer, _snapshot, wait_for
from .test_fabric_api import port

A, B, C = "http://ctl-a:9696", "http://ctl-b:9696", "http://ctl-c:9696"

# The URL list ------------------------------------------------------------------------------


def test_urls_split_on_commas_trimmed_and_deduplicated() -> None:
    assert parse_urls(f" {A}/ , {B},{A}") == (A, B)
    assert parse_urls([A, B + "/"]) == (A, B)


@pytest.mark.parametrize("bad", ["", " , ", "ctl:9696", f"{A},ftp://x", "http://:9696"])
def test_a_bad_url_list_is_refused_with_the_culprit_named(bad: str) -> None:
    with pytest.raises(ControllerUrlError, match="controller URL"):
        parse_urls(bad)


def test_the_agent_command_refuses_a_bad_api_list_clearly() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["agent", "--host", "h1", "--api", f"{A},nonsense"])
    with pytest.raises(SystemExit, match=r"l3fabric agent: 'nonsense' is not a controller URL"):
        run_agent(args, "agent", lambda *_: pytest.fail("no agent for a bad --api"))


def test_two_threads_losing_one_controller_move_once() -> None:
    controllers = Controllers([A, B, C])
    assert controllers.unreachable(A, "refused") == B
    # The watcher's thread finds out later about the same controller: no second move.
    assert controllers.unreachable(A, "reset") == B
    assert controllers.unreachable(B, "refused") == C
    assert controllers.unreachable(C, "refused") == A  # round-robin


# FabricClient ----------------------------------------------------------------------------


class Fleet:
    """A mock transport for controllers A, B, C: ``down`` maps a host to the error it raises."""

    def __init__(self) -> None:
        self.down: dict[str, type[httpx.TransportError]] = {}
        self.unavailable: set[str] = set()  # hosts answering 503 (their store is out of reach)
        self.seen: list[tuple[str, str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.seen.append((host, request.method, request.url.path))
        if host in self.down:
            raise self.down[host]("controller gone", request=request)
        if host in self.unavailable:
            error = {"type": "ServiceUnavailable", "message": "the store cannot be reached"}
            return httpx.Response(503, json={"NeutronError": error})
        return httpx.Response(200, json={"served_by": host})


@pytest.fixture
def fleet() -> Fleet:
    return Fleet()


def client_of(fleet: Fleet, *urls: str) -> FabricClient:
    return FabricClient(list(urls), transport=httpx.MockTransport(fleet))


def test_a_refused_call_goes_to_the_next_controller_which_stays_in_use(fleet: Fleet) -> None:
    fleet.down["ctl-a"] = httpx.ConnectError
    with client_of(fleet, A, B) as client:
        assert client.get_fabric() == {"served_by": "ctl-b"}
        client.request("POST", "/v2.0/ports", json={"port": {}})  # a create: never sent to A
        assert client.api_url == B
    assert [h for h, _, _ in fleet.seen] == ["ctl-a", "ctl-b", "ctl-b"]


def test_a_create_that_may_have_reached_a_dying_controller_is_not_repeated(fleet: Fleet) -> None:
    """A reset after the request went out: the first controller may have committed it,
    so a repeat could create the port twice; the caller gets the error instead."""
    fleet.down["ctl-a"] = httpx.ReadError
    with client_of(fleet, A, B) as client:
        with pytest.raises(ControllerUnavailable, match="ctl-a"):
            client.request("POST", "/v2.0/ports", json={"port": {}})
        assert fleet.seen == [("ctl-a", "POST", "/v2.0/ports")]
        # The next call goes to the other controller straight away.
        client.request("POST", "/v2.0/ports", json={"port": {}})
    assert fleet.seen[-1] == ("ctl-b", "POST", "/v2.0/ports")


def test_heartbeats_and_reads_are_repeated_after_a_reset(fleet: Fleet) -> None:
    fleet.down["ctl-a"] = httpx.RemoteProtocolError
    with client_of(fleet, A, B) as client:
        client.heartbeat("h1", ports={"p1": "ACTIVE"})
    assert [h for h, _, _ in fleet.seen] == ["ctl-a", "ctl-b"]


def test_every_controller_down_is_one_error_after_one_try_each(fleet: Fleet) -> None:
    fleet.down.update({"ctl-a": httpx.ConnectError, "ctl-b": httpx.ConnectTimeout})
    with client_of(fleet, A, B) as client, pytest.raises(ControllerUnavailable, match="ctl-b"):
        client.get_fabric()
    assert [h for h, _, _ in fleet.seen] == ["ctl-a", "ctl-b"]


def test_a_controller_answering_503_is_left_for_reads_but_a_create_gets_the_503(
    fleet: Fleet,
) -> None:
    fleet.unavailable.add("ctl-a")
    with client_of(fleet, A, B) as client:
        assert client.get_fabric() == {"served_by": "ctl-b"}
    fleet.seen.clear()
    with client_of(fleet, A, B) as client:
        with pytest.raises(ApiError) as raised:
            client.request("POST", "/v2.0/ports", json={"port": {}})
        assert raised.value.status == 503 and client.api_url == B
    assert fleet.seen == [("ctl-a", "POST", "/v2.0/ports")]


# The watch -------------------------------------------------------------------------------


def watch_until(
    handler: Callable[[httpx.Request], httpx.Response],
    network: str,
    calls: list[str],
    **options: float,
) -> HostStateWatcher:
    """Watch h1 through controllers A and B (``handler`` answers both) until ``network``
    is in the cache. By default a backoff takes 30 s: the move must not wait for one."""
    settings: dict[str, float] = {"watch_timeout": 0.1, "backoff_initial": 30, **options}
    watcher = HostStateWatcher(
        [A, B], "h1", transport=httpx.MockTransport(handler), **settings
    ).start()
    try:
        wait_for(lambda: network in watcher.state().networks, 5, f"not seen: {calls}")
    finally:
        watcher.stop()
    return watcher


def test_watch_resumes_at_the_next_controller_from_its_revision() -> None:
    """The watch's controller resets the long poll (killed): the watcher asks the other
    one for what follows its revision at once, with no backoff and no new snapshot."""
    calls: list[str] = []
    killed = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        since = request.url.params.get("since")
        calls.append(f"{request.url.host} {'snapshot' if since is None else 'watch ' + since}")
        if request.url.host == "ctl-a" and killed.is_set():
            raise httpx.ConnectError("refused", request=request)
        if since is None:
            return httpx.Response(200, json=_snapshot(5, []))
        if request.url.host == "ctl-a":
            killed.set()
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        events = [{"type": "put", "kind": "network", "id": "n1", "object": {"id": "n1"}}]
        return httpx.Response(200, json={"revision": 6, "events": events if since == "5" else []})

    watcher = watch_until(handler, "n1", calls)
    assert calls[:3] == ["ctl-a snapshot", "ctl-a watch 5", "ctl-b watch 5"]
    assert watcher.snapshots == 1 and watcher.failovers == 1 and watcher.api_url == B


def test_a_compacted_revision_at_the_next_controller_means_a_new_snapshot_there() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        since = request.url.params.get("since")
        calls.append(f"{request.url.host} {'snapshot' if since is None else 'watch ' + since}")
        if request.url.host == "ctl-a":
            if since is None:
                return httpx.Response(200, json=_snapshot(5, []))
            raise httpx.ReadError("reset", request=request)
        if since is None:
            return httpx.Response(200, json=_snapshot(90, [{"id": "n2"}]))
        if since == "5":
            error = {"type": "ResyncRequired", "message": "revision 5 is compacted"}
            return httpx.Response(410, json={"NeutronError": error})
        return httpx.Response(200, json={"revision": int(since), "events": []})

    watcher = watch_until(handler, "n2", calls)
    assert calls[:4] == ["ctl-a snapshot", "ctl-a watch 5", "ctl-b watch 5", "ctl-b snapshot"]
    assert watcher.state().revision == 90


def test_a_heartbeat_that_finds_the_controller_hung_cuts_the_watch_short_there() -> None:
    """A hung controller (SIGSTOP, a full disk) holds the long poll open until its timeout;
    once the heartbeat, sharing the list, times out there, the watch moves at once."""
    calls: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        since = request.url.params.get("since")
        calls.append(f"{request.url.host} {'snapshot' if since is None else 'watch ' + since}")
        if since is None:
            return httpx.Response(200, json=_snapshot(5, []))
        if request.url.host == "ctl-a":
            await asyncio.sleep(60)  # hung: no answer, no reset
        events = [{"type": "put", "kind": "network", "id": "n1", "object": {"id": "n1"}}]
        return httpx.Response(200, json={"revision": 6, "events": events if since == "5" else []})

    controllers = Controllers([A, B])
    watcher = HostStateWatcher(
        controllers, "h1", watch_timeout=30, transport=httpx.MockTransport(handler)
    ).start()
    try:
        wait_for(lambda: calls[-1:] == ["ctl-a watch 5"], 5, f"no long poll: {calls}")
        fleet = Fleet()
        fleet.down["ctl-a"] = httpx.ReadTimeout
        with FabricClient(controllers, transport=httpx.MockTransport(fleet)) as heartbeats:
            started = time.monotonic()
            heartbeats.heartbeat("h1")
        wait_for(lambda: "n1" in watcher.state().networks, 2, f"watch still on A: {calls}")
        moved_s = time.monotonic() - started
    finally:
        watcher.stop()
    assert moved_s < 1.0 and calls[-1] in ("ctl-b watch 5", "ctl-b watch 6")
    assert watcher.snapshots == 1


def test_a_store_outage_on_every_controller_is_waited_out_without_a_resync() -> None:
    """Every controller answers 503 for a while (the store is down): the watcher keeps
    trying from its revision and takes no new snapshot (a 503 is no poisoned revision)."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        since = request.url.params.get("since")
        calls.append(f"{request.url.host} {'snapshot' if since is None else 'watch ' + since}")
        if since is None:
            return httpx.Response(200, json=_snapshot(5, []))
        if len(calls) <= 12:
            error = {"type": "ServiceUnavailable", "message": "the store cannot be reached"}
            return httpx.Response(503, json={"NeutronError": error})
        events = [{"type": "put", "kind": "network", "id": "n1", "object": {"id": "n1"}}]
        return httpx.Response(200, json={"revision": 6, "events": events if since == "5" else []})

    watch_until(handler, "n1", calls, backoff_initial=0.01, backoff_max=0.05, resync_after=3)
    assert calls.count("ctl-a snapshot") + calls.count("ctl-b snapshot") == 1, calls
    assert {c.split()[0] for c in calls[1:12]} == {"ctl-a", "ctl-b"}  # both were tried


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[LoopbackServer, LoopbackServer, SqliteStore]]:
    """Two controllers, each with its own store on one SQLite file (as two processes)."""
    stores = [SqliteStore(tmp_path / "fabric.db") for _ in range(2)]
    servers = [LoopbackServer(s) for s in stores]
    for server in servers:
        server.start()
    yield servers[0], servers[1], stores[1]
    for server in servers:
        server.stop()
    for store in stores:
        store.close()


def test_watch_follows_a_write_through_the_other_controller_after_its_own_stops(
    two_servers: tuple[LoopbackServer, LoopbackServer, SqliteStore],
) -> None:
    first, second, store = two_servers
    watcher = HostStateWatcher([first.url, second.url], "h1", watch_timeout=5).start()
    try:
        assert watcher.synced.wait(10)
        store.put(keys.neutron_key("ports", "p1"), port("p1", "h1"))
        wait_for(lambda: "p1" in watcher.state().ports, 10, "no event while the first serves")
        first.stop()
        store.put(keys.neutron_key("ports", "p2"), port("p2", "h1", ip="10.1.0.6"))
        wait_for(lambda: "p2" in watcher.state().ports, 5, "no event after the first stopped")
    finally:
        watcher.stop()
    assert watcher.api_url == second.url
    assert watcher.snapshots == 1  # resumed from its revision: no full resync
