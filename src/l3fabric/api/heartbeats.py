"""Heartbeats served in front of FastAPI, on the event loop when they need no store.

A thousand hosts beating every 2 s are 500 requests a second, the bulk of
what a controller serves. Through FastAPI each cost ~0.8 ms of CPU (its
routing, dependencies, exception and telemetry layers, and the hop to the
thread pool it shares with every sync endpoint); most of it was not the
heartbeat's work, and under load port creates queued behind heartbeats in
that shared pool.

``Heartbeats`` is an ASGI middleware placed inside the authentication and
body-limit middlewares (so the same callers are refused the same way) that
answers ``POST /v1/{hosts,gateways}/NAME/heartbeat`` itself: the body through
the same strict parser (``api.body``), the same service call
(``FabricService.host_heartbeat``/``gateway_heartbeat``), the same error
bodies (``api.errors.response_for``). A heartbeat that changes nothing
stored (the agent is known, its BGP state and its ports' statuses are what
this controller has) is all memory, and is answered on the event loop; the
others (a first heartbeat, a state to write) go to ``HEARTBEAT_THREADS``
threads of its own. Handing every heartbeat to a thread cost a third of the
server's CPU at 500 heartbeats/s (the queue's lock and condition, and the
GIL going back and forth), more than the heartbeat itself. The FastAPI routes
stay for /openapi.json.
"""

from __future__ import annotations

import functools
import re
from types import SimpleNamespace
from typing import Any

import anyio
import anyio.to_thread
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from l3fabric.api.body import decode_body
from l3fabric.api.errors import response_for
from l3fabric.api.jsontext import JsonResponse

# Heartbeats in flight at once: they are short, and more threads would only
# contend for the GIL with the event loop.
HEARTBEAT_THREADS = 8
_PATH = re.compile(r"^/v1/(host|gateway)s/([^/]+)/heartbeat$")
# What the metrics label these requests with, as FastAPI's routes would.
_ROUTES = {
    kind: SimpleNamespace(path=f"/v1/{kind}s/{{name}}/heartbeat") for kind in ("host", "gateway")
}


class Heartbeats:
    """ASGI middleware: host and gateway heartbeats without FastAPI (module docstring)."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        # The app's state: its ``fabric`` service is made after the middleware is added.
        self.state = state
        self._limiter: anyio.CapacityLimiter | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = _PATH.match(scope["path"]) if scope["type"] == "http" else None
        if found is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        kind, name = found.groups()
        scope["route"] = _ROUTES[kind]
        fabric = self.state.fabric
        beat = fabric.host_heartbeat if kind == "host" else fabric.gateway_heartbeat
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(HEARTBEAT_THREADS)
        try:
            payload = decode_body(await _body(receive))
            answer = beat(name, payload, store=False)
            if answer is None:  # the store is needed: not on the event loop
                answer = await anyio.to_thread.run_sync(
                    functools.partial(beat, name, payload), limiter=self._limiter
                )
            response = JsonResponse(answer)
        except Exception as exc:  # every failure leaves as a Neutron body, as through FastAPI
            response = response_for(exc)
        await response(scope, receive, send)


async def _body(receive: Receive) -> bytes:
    """The whole request body (the body limit's ``receive`` raises past its limit)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
