"""``l3fabric server`` as a process: argument errors, SIGTERM, two servers on one file, netns."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from l3fabric.client import ApiError, FabricClient, HostStateWatcher
from l3fabric.loopback import free_port

from .test_client_watcher import wait_for
from .test_fabric_api import HOST

ServerFactory = Callable[..., tuple[subprocess.Popen, str]]


def server_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "l3fabric.cli", "server", *args]


@contextlib.contextmanager
def servers(store_url: str, count: int) -> Iterator[list[tuple[subprocess.Popen, str]]]:
    """``count`` ``l3fabric server`` processes on one store, each ready; killed afterwards."""
    started = []
    try:
        for _ in range(count):
            port = free_port()
            proc = subprocess.Popen(
                server_command("--store", store_url, "--listen", f"127.0.0.1:{port}"),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            started.append((proc, f"http://127.0.0.1:{port}"))
        for proc, url in started:
            wait_ready(url, proc)
        yield started
    finally:
        for proc, _ in started:
            proc.kill()
            proc.wait(10)


def wait_ready(
    url: str,
    proc: subprocess.Popen,
    timeout: float = 20,
    path: str = "/v1/fabric",
    verify: ssl.SSLContext | bool = True,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited: {proc.stdout.read() if proc.stdout else ''}"
        try:
            if httpx.get(f"{url}{path}", timeout=1, verify=verify).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"server at {url} did not answer in {timeout} s")


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[ServerFactory]:
    procs: list[subprocess.Popen] = []

    def start(
        db: str = "s.db",
        *extra: str,
        fd_limit: tuple[int, int] | None = None,
        scheme: str = "http",
        ready: str = "/v1/fabric",
        verify: ssl.SSLContext | bool = True,
    ) -> tuple[subprocess.Popen, str]:
        """A server on a free port; ``fd_limit``: its RLIMIT_NOFILE (soft, hard);
        ready once ``ready`` answers 200 (``verify``: TLS, for an https ``scheme``)."""
        port = free_port()
        args = ["--store", f"sqlite:///{tmp_path / db}", "--listen", f"127.0.0.1:{port}", *extra]
        proc = subprocess.Popen(
            server_command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, fd_limit))
            if fd_limit
            else None,
        )
        procs.append(proc)
        url = f"{scheme}://127.0.0.1:{port}"
        wait_ready(url, proc, path=ready, verify=verify)
        return proc, url

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--listen", "localhost"], "expected HOST:PORT"),
        (["--listen", "example.org:80"], "not an IP address"),
        (["--listen", "127.0.0.1:70000"], "port must be"),
        (["--store", "http://x"], "unknown store"),
        (["--store", "sqlite://relative/x.db"], "three slashes"),
        (["--listen-in", "127.0.0.1:9696"], "NETNS=HOST:PORT"),
        (["--listen-in", "l3f-no-such-ns=127.0.0.1:9696"], "does not exist"),
        (["--auth", "keystone"], "needs --keystone-config FILE"),
        (["--auth", "keystone", "--keystone-config", "/nonexistent"], "is not a file"),
        (["--keystone-config", "/etc/hostname"], "needs --auth keystone"),
    ],
)
def test_bad_arguments_are_readable_errors(tmp_path: Path, args: list[str], words: str) -> None:
    if "--store" not in args:
        args = ["--store", f"sqlite:///{tmp_path / 's.db'}", *args]
    done = subprocess.run(server_command(*args), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert words in done.stderr
    assert "Traceback" not in done.stderr


def test_busy_port_is_a_readable_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        done = subprocess.run(
            server_command("--store", f"sqlite:///{tmp_path / 's.db'}", "--listen", address),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 2
    assert "cannot listen on" in done.stderr and "Traceback" not in done.stderr


def test_sigterm_stops_cleanly_even_during_a_long_poll(start_server: ServerFactory) -> None:
    proc, url = start_server()
    with FabricClient(url) as client:
        revision = client.snapshot("h1")["revision"]
        answer: dict = {}
        poll = threading.Thread(target=lambda: answer.update(client.watch("h1", revision, 50)))
        poll.start()
        time.sleep(0.3)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert time.monotonic() - started < 5
        poll.join(10)
    # The poll was answered (no events), not cut off: the agent simply polls again.
    assert answer == {"revision": revision, "events": []}
    assert "stopped" in proc.stdout.read()


def test_two_servers_on_one_file(start_server: ServerFactory) -> None:
    _, url_a = start_server("shared.db")
    _, url_b = start_server("shared.db")
    with FabricClient(url_a) as a, FabricClient(url_b) as b:
        revision = b.snapshot("h1")["revision"]
        answer: dict = {}
        poll = threading.Thread(target=lambda: answer.update(b.watch("h1", revision, 20)))
        poll.start()
        time.sleep(0.2)
        a.register_host("h2", router_id="10.0.0.12", address="10.0.0.12")
        poll.join(20)
        assert [(e["kind"], e["id"]) for e in answer["events"]] == [("host", "h2")]
        b.register_host("h1", **HOST)
        assert {h["name"] for h in a.list_hosts()} == {"h1", "h2"}
        assert {h["name"] for h in b.list_hosts()} == {"h1", "h2"}


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"
)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"l3f-srvtest-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=10)


@needs_root
def test_listen_in_a_network_namespace(start_server: ServerFactory, netns: str) -> None:
    inner = free_port()
    _, _url = start_server("s.db", "--listen-in", f"{netns}=127.0.0.1:{inner}")
    probe = (
        "import httpx, sys;"
        f"r = httpx.get('http://127.0.0.1:{inner}/v1/fabric', timeout=5);"
        "sys.exit(0 if r.json()['asn'] == 65000 else 1)"
    )
    inside = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert inside.returncode == 0, inside.stderr
    # The socket lives in the namespace: the same address in the root namespace is closed.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{inner}/v1/fabric", timeout=2)


def test_neutron_ports_reach_the_watcher_and_heartbeats_reach_neutron(
    start_server: ServerFactory,
) -> None:
    _, url = start_server()
    with FabricClient(url) as api:
        api.register_host("h1", **HOST)
        net = api.create_network(name="private")
        subnet = api.create_subnet(network_id=net["id"], cidr="10.1.0.0/24", ip_version=4)
        with HostStateWatcher(url, "h1", watch_timeout=5) as watcher:
            assert watcher.synced.wait(10)
            vm = api.create_port(network_id=net["id"], **{"binding:host_id": "h1"})
            wait_for(lambda: vm["id"] in watcher.state().ports, 5, "port not watched")
            cached = watcher.state().ports[vm["id"]]
            assert cached["fixed_ips"][0]["subnet_id"] == subnet["id"]
            assert subnet["id"] in watcher.state().subnets
            api.heartbeat("h1", ports={vm["id"]: "ACTIVE"})
            assert api.get("ports", vm["id"])["status"] == "ACTIVE"
            api.update("ports", vm["id"], {"binding:host_id": "h2"})
            wait_for(lambda: vm["id"] not in watcher.state().ports, 5, "moved port kept")
        assert [p["id"] for p in api.list("ports", network_id=net["id"])] == [vm["id"]]
        api.delete("ports", vm["id"])
        with pytest.raises(ApiError) as caught:
            api.get("ports", vm["id"])
        assert caught.value.status == 404


def test_keep_alive_requests_do_not_stall(start_server: ServerFactory) -> None:
    # Agents reuse one connection; Nagle + delayed ACK once made each request 40+ ms.
    _, url = start_server()
    with httpx.Client(base_url=url) as http:
        http.get("/v1/fabric")
        times = []
        for _ in range(20):
            started = time.monotonic()
            http.put("/v1/fabric", json={"asn": 64512})
            times.append(time.monotonic() - started)
    assert sorted(times)[len(times) // 2] < 0.02


def test_many_long_polls_do_not_block_other_requests(start_server: ServerFactory) -> None:
    # More watchers than Starlette's default pool of 40 threads for sync endpoints.
    _, url = start_server()
    revision = httpx.get(f"{url}/v1/watch", params={"host": "h0"}).json()["revision"]
    params = [{"host": f"h{i}", "since": revision, "timeout": 4} for i in range(60)]
    polls = [
        threading.Thread(
            target=httpx.get, args=(f"{url}/v1/watch",), kwargs={"params": p, "timeout": 10}
        )
        for p in params
    ]
    for poll in polls:
        poll.start()
    time.sleep(0.5)
    started = time.monotonic()
    assert httpx.get(f"{url}/v1/hosts", timeout=5).status_code == 200
    assert httpx.put(f"{url}/v1/fabric", json={}, timeout=5).status_code == 200
    assert time.monotonic() - started < 1.0
    for poll in polls:
        poll.join(15)
