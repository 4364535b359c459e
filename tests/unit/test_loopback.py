"""Free loopback ports come from below the kernel's ephemeral range, which outgoing connections use."""

from __future__ import annotations

import socket

from l3fabric import loopback


def test_a_free_port_is_bindable_and_not_ephemeral() -> None:
    start = loopback._ephemeral_start()
    for _ in range(20):
        port = loopback.free_port()
        assert loopback.LOWEST <= port < start
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))  # still free


def test_a_taken_port_is_never_given(monkeypatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        picks = iter([busy, busy, busy + 1 if busy < 65535 else busy - 1])
        monkeypatch.setattr(loopback.random, "randint", lambda _a, _b: next(picks))
        monkeypatch.setattr(loopback, "_ephemeral_start", lambda: 65536)
        assert loopback.free_port() != busy


def test_consecutive_free_ports() -> None:
    first = loopback.free_port(3)
    for port in range(first, first + 3):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))
