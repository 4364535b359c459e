"""No client can exhaust the server: body limits, bounded fields, slow clients, connection cap.

The attacks run against real ``l3fabric server`` processes on loopback, with
small counts and a lowered descriptor limit so that they stay fast.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from l3fabric.http_guard import FD_RESERVE, fd_budget

from .api_helpers import error, make
from .test_fabric_api import HOST
from .test_server_process import ServerFactory, start_server  # noqa: F401 (a fixture)

LIMIT = 114_688


def _network(client) -> str:
    return make(client, "networks", "network", name="n")["id"]


# Request bodies ---------------------------------------------------------------------


def _chunks(size: int) -> Iterator[bytes]:
    # A generator body is sent chunked: no Content-Length to refuse up front.
    yield b'{"network": {"name": "'
    for _ in range(size // 65_536):
        yield b"x" * 65_536
    yield b'"}}'


def test_a_body_over_the_limit_is_a_413_and_stores_nothing(client) -> None:
    declared = client.post("/v2.0/networks", json={"network": {"name": "x" * (LIMIT + 1)}})
    assert error(declared, 413) == "RequestEntityTooLarge"
    assert str(LIMIT) in declared.json()["NeutronError"]["message"]
    assert declared.headers["connection"] == "close"
    chunked = client.post("/v2.0/networks", content=_chunks(4 * LIMIT))
    assert error(chunked, 413) == "RequestEntityTooLarge"
    # The fabric API's bodies (parsed by FastAPI) too.
    fabric = client.put("/v1/fabric", content=_chunks(4 * LIMIT))
    assert error(fabric, 413) == "RequestEntityTooLarge"
    assert client.get("/v2.0/networks").json()["networks"] == []


def test_a_heartbeat_of_10000_ports_fits_its_own_limit(client) -> None:
    assert client.put("/v1/hosts/h1", json=HOST).status_code == 201
    ports = {f"{i:08d}-0000-4000-8000-000000000000": "ACTIVE" for i in range(10_000)}
    beat = client.post("/v1/hosts/h1/heartbeat", json={"ports": ports})
    assert beat.status_code == 200, beat.text


# Free-form fields ---------------------------------------------------------------------


def test_binding_profile_is_bounded(client) -> None:
    net = _network(client)
    fits = {"pci_slot": "0000:03:00.1", "pad": "x" * 16_000}
    port = make(client, "ports", "port", network_id=net, **{"binding:profile": fits})
    big = {"pad": "x" * 16_400}
    r = client.post("/v2.0/ports", json={"port": {"network_id": net, "binding:profile": big}})
    assert error(r, 400)
    assert "binding:profile" in r.json()["NeutronError"]["message"]
    r = client.put(f"/v2.0/ports/{port['id']}", json={"port": {"binding:profile": big}})
    assert error(r, 400)
    assert client.get(f"/v2.0/ports/{port['id']}").json()["port"]["binding:profile"] == fits
    assert len(client.get("/v2.0/ports").json()["ports"]) == 1


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("hosts", {"agent": {"pad": "x" * 17_000}}),
        (
            "hosts",
            {"bgp": [{"name": f"p{i}", "state": "up", "info": "x" * 300} for i in range(900)]},
        ),
        ("gateways", {"nat": {"pad": "x" * 17_000}}),
        ("gateways", {"agent": {"pad": "x" * 17_000}}),
        ("gateways", {"anycast": {"prefixes": ["x" * 300] * 900}}),
    ],
)
def test_heartbeat_free_form_fields_are_bounded(client, kind: str, body: dict) -> None:
    gateway = {"router_id": "10.0.0.11", "fabric_addresses": ["10.0.0.11"]}
    registration = gateway if kind == "gateways" else HOST
    assert client.put(f"/v1/{kind}/g1", json=registration).status_code == 201
    assert error(client.post(f"/v1/{kind}/g1/heartbeat", json=body), 400) == "InvalidInput"
    shown = client.get(f"/v1/{kind}/g1").json()
    assert shown["heartbeat_at"] is None  # nothing of it was stored


# Attacks on a real server process -------------------------------------------------------


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def test_eight_50_mb_uploads_get_413_fast_and_memory_stays_flat(
    start_server: ServerFactory,  # noqa: F811
) -> None:
    proc, url = start_server()
    net = httpx.post(f"{url}/v2.0/networks", json={"network": {"name": "n"}}).json()["network"]
    body = b'{"port": {"network_id": "%s", "binding:profile": {"x": "%s"}}}' % (
        net["id"].encode(),
        b"x" * (50 << 20),
    )
    before = _rss_mb(proc.pid)
    answers: list[tuple[int, float]] = []

    def upload(chunked: bool) -> None:
        started = time.monotonic()
        content = iter([body[i : i + (1 << 20)] for i in range(0, len(body), 1 << 20)])
        r = httpx.post(f"{url}/v2.0/ports", content=content if chunked else body, timeout=30)
        answers.append((r.status_code, time.monotonic() - started))

    uploads = [threading.Thread(target=upload, args=(i % 2 == 1,)) for i in range(8)]
    for thread in uploads:
        thread.start()
    peak = before
    while any(thread.is_alive() for thread in uploads):
        peak = max(peak, _rss_mb(proc.pid))
        time.sleep(0.02)
    assert [status for status, _ in answers] == [413] * 8
    assert max(seconds for _, seconds in answers) < 5
    assert peak - before < 30, f"RSS {before:.0f} MB -> {peak:.0f} MB"
    assert httpx.get(f"{url}/v2.0/ports").json()["ports"] == []


def _closed(sock: socket.socket, deadline: float) -> bool:
    """True once the server has closed ``sock`` (EOF or reset) before ``deadline``."""
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def test_half_headers_do_not_make_the_server_unreachable(
    start_server: ServerFactory,  # noqa: F811
) -> None:
    # Without limits, 300 connections over a 256-descriptor limit hang the server.
    _, url = start_server("s.db", "--header-timeout", "2", fd_limit=(256, 256))
    port = int(url.rsplit(":", 1)[1])
    slow = []
    try:
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /v1/fabric HTTP/1.1\r\nHost: l3f\r\n")
            slow.append(sock)
        opened = time.monotonic()
        time.sleep(0.3)
        started = time.monotonic()
        assert httpx.get(f"{url}/v1/fabric", timeout=5).status_code == 200
        assert time.monotonic() - started < 1.0
        # All of them are closed once the header timeout has passed.
        deadline = opened + 2 + 2
        assert sum(_closed(sock, deadline) for sock in slow) == 300
    finally:
        for sock in slow:
            sock.close()
    assert httpx.get(f"{url}/v1/fabric", timeout=5).status_code == 200


def test_a_slow_body_is_cut_after_the_body_timeout(start_server: ServerFactory) -> None:  # noqa: F811
    proc, url = start_server("s.db", "--body-timeout", "1")
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /v2.0/networks HTTP/1.1\r\nHost: l3f\r\nContent-Length: 100\r\n\r\n{")
        started = time.monotonic()
        for _ in range(4):  # a trickle does not extend the deadline
            time.sleep(0.2)
            sock.sendall(b" ")
        assert _closed(sock, started + 3)
        assert 0.9 < time.monotonic() - started < 3
    proc.terminate()
    log = proc.communicate(timeout=10)[0]
    assert "Traceback" not in log and "unexpected error" not in log


def test_a_long_poll_outlives_every_timeout(start_server: ServerFactory) -> None:  # noqa: F811
    timeouts = ["--header-timeout", "1", "--body-timeout", "1", "--keep-alive-timeout", "1"]
    _, url = start_server("s.db", *timeouts)
    with httpx.Client(base_url=url, timeout=10) as http:
        revision = http.get("/v1/watch", params={"host": "h1"}).json()["revision"]
        started = time.monotonic()
        poll = http.get("/v1/watch", params={"host": "h1", "since": revision, "timeout": 3})
        assert poll.status_code == 200 and poll.json()["events"] == []
        assert time.monotonic() - started > 2.9
        # The same connection serves the next poll.
        assert http.get("/v1/watch", params={"host": "h1", "since": revision, "timeout": 0}).json()


def test_beyond_the_cap_with_every_connection_busy_a_new_one_gets_503(
    start_server: ServerFactory,  # noqa: F811
) -> None:
    _, url = start_server("s.db", "--max-connections", "3")
    revision = httpx.get(f"{url}/v1/watch", params={"host": "h1"}).json()["revision"]
    answers: list[int] = []
    params = {"host": "h1", "since": revision, "timeout": 3}
    polls = [
        threading.Thread(
            target=lambda: answers.append(
                httpx.get(f"{url}/v1/watch", params=params, timeout=10).status_code
            )
        )
        for _ in range(3)
    ]
    for poll in polls:
        poll.start()
    time.sleep(0.5)
    started = time.monotonic()
    refused = httpx.get(f"{url}/v1/fabric", timeout=5)
    assert error(refused, 503) == "ServiceUnavailable"
    assert time.monotonic() - started < 1
    for poll in polls:
        poll.join(10)
    assert answers == [200, 200, 200]
    assert httpx.get(f"{url}/v1/fabric", timeout=5).status_code == 200


def test_at_the_cap_an_idle_connection_makes_room(start_server: ServerFactory) -> None:  # noqa: F811
    _, url = start_server("s.db", "--max-connections", "2", "--keep-alive-timeout", "30")
    revision = httpx.get(f"{url}/v1/watch", params={"host": "h1"}).json()["revision"]
    params = {"host": "h1", "since": revision, "timeout": 2}
    poll = threading.Thread(target=httpx.get, args=(f"{url}/v1/watch",), kwargs={"params": params})
    with httpx.Client(base_url=url, timeout=5) as idle:
        assert idle.get("/v1/fabric").status_code == 200  # then it stays open, idle
        poll.start()
        time.sleep(0.3)
        assert httpx.get(f"{url}/v1/fabric", timeout=5).status_code == 200
        # The idle client's pool notices its connection was closed and opens another.
        poll.join(10)
        assert idle.get("/v1/fabric").status_code == 200


def test_the_descriptor_limit_is_raised_and_sizes_the_cap(
    start_server: ServerFactory,  # noqa: F811
) -> None:
    proc, _ = start_server("s.db", fd_limit=(256, 1024))
    limits = Path(f"/proc/{proc.pid}/limits").read_text()
    assert re.search(r"Max open files\s+1024\s+1024", limits)
    cap, backlog = fd_budget(4096, 1024)
    assert cap + 4 * backlog + FD_RESERVE <= 1024
    assert fd_budget(4096, 65_536)[0] == 4096
