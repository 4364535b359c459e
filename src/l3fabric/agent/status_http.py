"""An agent's ``/metrics``, ``/healthz`` and ``/readyz`` on a loopback port of its namespace.

``/healthz``: 200 while the reconcile loop turns (it ticks at least every
resync interval), 503 if it is stuck. ``/readyz``: 200 once the agent has
the controller's snapshot and has run a pass, 503 before. A port that is
taken is logged and skipped: metrics never stop an agent from running.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.exposition import generate_latest

from l3fabric.plain_http import PlainHTTPServer

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"agent": 9180, "gateway": 9181}
Check = Callable[[], tuple[bool, dict[str, object]]]


def parse_listen(text: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; port 0: any free one) or ``off``."""
    if text == "off":
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT or off")
    return host.strip("[]") or "127.0.0.1", int(port)


class _Server(PlainHTTPServer):
    def __init__(self, listen: tuple[str, int], handler: type) -> None:
        self.address_family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
        super().__init__(listen, handler)


def _handler(registry: CollectorRegistry, health: Check, ready: Check) -> type:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                ok, body = (health if path == "/healthz" else ready)()
                self._send(200 if ok else 503, json.dumps(body).encode(), "application/json")
            else:
                self._send(404, b'{"error": "not found"}', "application/json")

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("status http: " + format, *args)

    return Handler


@contextlib.contextmanager
def serving(
    listen: tuple[str, int] | None, registry: CollectorRegistry, health: Check, ready: Check
) -> Iterator[PlainHTTPServer | None]:
    """Serve the three pages on ``listen`` (None: not at all) while the block runs."""
    if listen is None:
        yield None
        return
    try:
        server = _Server(listen, _handler(registry, health, ready))
    except OSError as exc:
        log.warning("metrics and health on %s:%d not served: %s", *listen, exc)
        yield None
        return
    thread = threading.Thread(target=server.serve_forever, name="status-http", daemon=True)
    thread.start()
    log.info("metrics and health on http://%s:%d/metrics", *listen)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
