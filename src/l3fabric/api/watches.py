"""Watch long polls served in front of FastAPI, on the event loop.

A controller of a thousand hosts holds a thousand long polls at all times.
Through FastAPI each waiting poll held 171 objects the garbage collector
tracks (31 coroutines and their closures: routing, dependencies, exception
layers, the thread-pool hop of the result), and every young collection of
the controller walked the ones started since the last: 25,000-58,000
objects, 10-50 ms of CPU every one to two seconds at 1,000 hosts, with the
event loop and every event waiting (docs/benchmarks.md, "Issue 13, branch
fan13c"). That cost grew with the number of hosts connected, not with the
changes.

``Watches`` is an ASGI middleware placed next to ``api.heartbeats`` (inside
the authentication and body-limit middlewares, so the same callers are
refused the same way) that answers ``GET /v1/watch?host=H&since=N[&timeout=T]``
itself: the same checks (``check_watch``), the same hub
(``WatchHub.watch_async``), the same metrics and error bodies. Anything
else (a snapshot, without ``since``; a query FastAPI would refuse or read
differently) goes on to the FastAPI route, which stays for /openapi.json.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

from starlette.datastructures import QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from l3fabric.api.errors import response_for
from l3fabric.api.jsontext import JsonResponse
from l3fabric.api.metrics import counted_watch
from l3fabric.service.watch import WATCH_DEFAULT_TIMEOUT_S, check_watch

_PATH = "/v1/watch"
_KNOWN = {"host", "since", "timeout"}
# The numbers read here; anything else (signs, exponents, "nan") is FastAPI's to judge.
_INTEGER = re.compile(r"[0-9]{1,18}")
_DECIMAL = re.compile(r"[0-9]{1,6}(\.[0-9]{1,6})?")
# What the metrics label these requests with, as FastAPI's route would.
_ROUTE = SimpleNamespace(path=_PATH)


class Watches:
    """ASGI middleware: watch long polls without FastAPI (module docstring)."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        # The app's state: its ``watch_hub`` is made after the middleware is added.
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        poll = (
            long_poll(scope.get("query_string", b""))
            if scope["type"] == "http" and scope["path"] == _PATH and scope["method"] == "GET"
            else None
        )
        if poll is None:
            await self.app(scope, receive, send)
            return
        host, since, timeout = poll
        scope["route"] = _ROUTE
        state = self.state
        try:
            check_watch(host, since, timeout)
            hub = state.watch_hub
            with counted_watch(getattr(state, "metrics", None), hub.revision - since):
                answer = await hub.watch_async(host, since, timeout, state.stopping)
            response = JsonResponse(answer)
        except Exception as exc:  # every failure leaves as a Neutron body, as through FastAPI
            response = response_for(exc)
        await response(scope, receive, send)


def long_poll(query_string: bytes) -> tuple[str, int, float] | None:
    """(host, since, timeout) of a long poll's query, or None when FastAPI should
    read it: no ``since`` (a snapshot), a parameter missing, repeated, unknown or
    not a plain number."""
    query = QueryParams(query_string)
    names = [name for name, _ in query.multi_items()]
    if len(names) != len(set(names)) or not {"host", "since"} <= set(names) <= _KNOWN:
        return None
    since, timeout = query["since"], query.get("timeout")
    if not _INTEGER.fullmatch(since) or not (timeout is None or _DECIMAL.fullmatch(timeout)):
        return None
    seconds = WATCH_DEFAULT_TIMEOUT_S if timeout is None else float(timeout)
    return query["host"], int(since), seconds
