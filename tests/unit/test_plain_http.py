"""The agents' HTTP servers start without a DNS lookup (a lab host has no resolver)."""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler

import pytest

from l3fabric.plain_http import PlainHTTPServer


def test_binding_asks_no_dns_for_the_servers_name(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*_args: object) -> str:
        raise AssertionError("getfqdn called: a reverse DNS lookup at start-up")

    monkeypatch.setattr(socket, "getfqdn", no_dns)
    server = PlainHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    try:
        assert server.server_name == "127.0.0.1" and server.server_port > 0
    finally:
        server.server_close()
