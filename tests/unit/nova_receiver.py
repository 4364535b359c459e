"""A small stand-in for Nova's os-server-external-events API: a real HTTP
server on loopback that checks each body as Nova's API reference documents
it and records the events."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Nova's API reference, "Run Events": the names Neutron sends and the statuses.
_NAMES = {"network-vif-plugged", "network-vif-unplugged", "network-vif-deleted", "network-changed"}
_STATUSES = {"completed", "failed", "in-progress"}


def check_body(body: Any) -> list[dict[str, Any]]:
    """Nova's request schema: {"events": [{name, server_uuid, [tag], [status]}, ...]}."""
    assert isinstance(body, dict) and set(body) == {"events"}, body
    events = body["events"]
    assert isinstance(events, list) and events, body
    for e in events:
        assert set(e) <= {"name", "server_uuid", "tag", "status"}, e
        assert {"name", "server_uuid"} <= set(e), e
        assert e["name"] in _NAMES and e.get("status", "completed") in _STATUSES, e
        assert isinstance(e["server_uuid"], str) and e["server_uuid"], e
    return events


def answer_json(handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
    """Send ``body`` as a JSON response from a stdlib request handler."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class NovaReceiver:
    """Serves POST /v2.1/os-server-external-events; ``fail_first`` answers 503 that many times."""

    def __init__(self, token: str = "", fail_first: int = 0) -> None:
        self.events: list[dict[str, Any]] = []
        self.tokens: list[str | None] = []
        self.errors: list[str] = []
        self.fail_first = fail_first
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                receiver.tokens.append(self.headers.get("x-auth-token"))
                if self.path != "/v2.1/os-server-external-events":
                    return self._answer(404, {"itemNotFound": {"code": 404}})
                if token and self.headers.get("x-auth-token") != token:
                    return self._answer(401, {"error": "unauthorized"})
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    return self._answer(503, {})
                try:
                    events = check_body(json.loads(raw))
                except (AssertionError, ValueError) as exc:
                    receiver.errors.append(repr(exc))
                    return self._answer(400, {"badRequest": {"code": 400}})
                with receiver.arrived:
                    receiver.events += events
                    receiver.arrived.notify_all()
                self._answer(200, {"events": [{**e, "code": 200} for e in events]})

            def _answer(self, status: int, body: Any) -> None:
                answer_json(self, status, body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v2.1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> NovaReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.events) >= count, timeout)
            return list(self.events)
