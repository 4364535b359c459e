"""The controller's own health: ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz``.

- ``l3fabric_api_requests_total{method,route,status}`` and
  ``l3fabric_api_request_seconds{method,route}``: every request, by its route
  template (``/v1/hosts/{name}``, not the name: bounded label values);
  requests no route matched count as route ``unmatched``;
- ``l3fabric_watch_clients``: long polls open now; ``l3fabric_watch_lag_revisions``:
  how many revisions behind the controller's reader (its WatchHub) a watch
  request starts;
- ``l3fabric_store_seconds{op}``: each store call (get, range, txn, ...).

``/healthz`` answers while the process serves; ``/readyz`` only while the
store answers too (503 otherwise). All three are open without a token, as a
load balancer or Prometheus calls them; they reveal counts, no objects.
Each app has its own registry: tests run many apps in one process.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from l3fabric.store import Store

OPEN_PATHS = ("/metrics", "/healthz", "/readyz")
# Store calls that block by design (a long poll) are not latency.
_UNTIMED = {"watch", "close"}
_LAG_BUCKETS = (0, 1, 10, 100, 1_000, 10_000, 100_000, float("inf"))


class ApiMetrics:
    """The controller's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "l3fabric_api_requests", "API requests by route and status", ["method", "route",
            "status"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "l3fabric_api_request_seconds", "API request time", ["method", "route"], registry=r
        )
        self.watch_clients = Gauge("l3fabric_watch_clients", "Watch long polls open", registry=r)
        self.watch_lag = Histogram(
            "l3fabric_watch_lag_revisions",
            "Store revisions a watch request is behind when it arrives",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.store_seconds = Histogram(
            "l3fabric_store_seconds", "Store call time", ["op"], registry=r
        )


class TimedStore:
    """``store`` with each call's time in ``l3fabric_store_seconds{op}``."""

    def __init__(self, store: Store, metrics: ApiMetrics) -> None:
        self._store = store
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name.startswith("_") or name in _UNTIMED or not callable(attr):
            return attr
        observe = self._metrics.store_seconds.labels(name).observe

        def timed(*args: Any, **kwargs: Any) -> Any:
            begun = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                observe(time.perf_counter() - begun)

        return timed


class RequestMetrics:
    """ASGI middleware: counts and times every HTTP request by route template and status."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # unless a response starts
        begun = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - begun)


@contextlib.contextmanager
def counted_watch(metrics: ApiMetrics | None, lag: int) -> Iterator[None]:
    """A watch counted as open while the block runs, starting ``lag`` revisions behind."""
    if metrics is None:
        yield
        return
    metrics.watch_lag.observe(max(0, lag))
    metrics.watch_clients.inc()
    try:
        yield
    finally:
        metrics.watch_clients.dec()


def install(app: FastAPI, metrics: ApiMetrics) -> None:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``app``."""

    @app.get("/metrics", include_in_schema=False)
    def metrics_page() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> Response:
        try:
            revision = app.state.store.revision()
        except Exception as exc:  # any store failure: not ready, and say why
            return JSONResponse({"status": "store unavailable", "error": str(exc)}, 503)
        return JSONResponse({"status": "ready", "revision": revision})
