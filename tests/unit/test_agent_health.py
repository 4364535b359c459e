"""Health probes of anycast members: the rise/fall state machine, the probes, the threads."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from l3fabric.agent.anycast import Check, ProbeTarget
from l3fabric.agent.health import HealthProbes, Hysteresis, probe


def test_first_result_decides_at_once() -> None:
    for ok in (True, False):
        state = Hysteresis(rise=3, fall=3)
        assert state.record(ok) is True
        assert state.healthy is ok


def test_fall_failures_in_a_row_make_it_unhealthy() -> None:
    state = Hysteresis(rise=2, fall=3)
    state.record(True)
    assert [state.record(r) for r in (False, False, True, False, False)] == [False] * 5
    assert state.healthy is True  # the success in between restarted the count
    assert state.record(False) is True and state.healthy is False


def test_rise_successes_in_a_row_make_it_healthy_again() -> None:
    state = Hysteresis(rise=2, fall=1)
    state.record(False)
    assert state.record(True) is False
    assert state.record(False) is False
    assert state.record(True) is False
    assert state.record(True) is True and state.healthy is True


def test_rise_and_fall_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Hysteresis(rise=0, fall=1)


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def _target(kind: str, port: int | None, path: str = "/") -> ProbeTarget:
    check = Check(kind, port=port, path=path, interval_s=0.05, timeout_s=0.5, rise=1, fall=1)
    return ProbeTarget("g1", "p1", "127.0.0.1", check)


def test_tcp_probe(listener: int) -> None:
    assert probe(_target("tcp", listener)) is True
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # bound, not listening: refused
    assert probe(_target("tcp", closed)) is False


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        codes = {"/ok": 200, "/moved": 302, "/broken": 503}
        self.send_response(codes.get(self.path, 404))
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_http_probe_good_is_2xx_or_3xx() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        results = {path: probe(_target("http", port, path)) for path in ("/ok", "/moved", "/broken", "/nope")}  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert results == {"/ok": True, "/moved": True, "/broken": False, "/nope": False}


def test_icmp_probe_of_loopback() -> None:
    assert probe(_target("icmp", None)) is True


def test_probes_report_transitions_and_stop_when_targets_go() -> None:
    results = {"p1": True}
    changes: list[tuple[str, bool]] = []
    calls = {"p1": 0}

    def check(target: ProbeTarget) -> bool:
        calls[target.port_id] += 1
        return results[target.port_id]

    probes = HealthProbes(lambda t, healthy: changes.append((t.port_id, healthy)), check=check)
    target = _target("tcp", 1)
    try:
        probes.update({target.key: target})
        _wait(lambda: changes == [("p1", True)])
        assert probes.verdicts() == {("g1", "p1"): True}
        results["p1"] = False
        _wait(lambda: changes == [("p1", True), ("p1", False)])  # fall=1
        assert probes.verdicts() == {("g1", "p1"): False}
        probes.update({})
        assert probes.verdicts() == {}
        before = calls["p1"]
        time.sleep(0.2)
        assert calls["p1"] <= before + 1  # at most the probe that was running
    finally:
        probes.stop()


def test_more_targets_than_the_bound_are_refused() -> None:
    probes = HealthProbes(lambda t, h: None, check=lambda t: True, max_probes=1)
    a, b = _target("tcp", 1), ProbeTarget("g1", "p2", "127.0.0.1", _target("tcp", 1).check)
    try:
        assert probes.update({a.key: a, b.key: b}) == ["anycast: more than 1 members to probe"]
    finally:
        probes.stop()


def _wait(predicate: object, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
