"""Builds the controller's ASGI application over a store."""

from __future__ import annotations

from fastapi import FastAPI

from l3fabric.api import anycast, fabric, metrics, neutron, ui
from l3fabric.api.authn import Authenticate
from l3fabric.api.body_limit import BodyLimit
from l3fabric.api.errors import install_error_handlers
from l3fabric.api.heartbeats import Heartbeats
from l3fabric.api.metrics import ApiMetrics, RequestMetrics, TimedStore
from l3fabric.api.watches import Watches
from l3fabric.auth.base import Authenticator
from l3fabric.http_guard import DEFAULT_MAX_BODY_BYTES
from l3fabric.nova.events import NovaNotifier
from l3fabric.store import Store


def create_app(
    store: Store,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    authenticator: Authenticator | None = None,
    nova: NovaNotifier | None = None,
) -> FastAPI:
    """The whole API, stateless over ``store`` (several servers may share one store).

    ``authenticator``: who callers are (default: ``--auth none``, all admins).
    ``nova``: told of port status changes (Nova's external events); None: no Nova."""
    app = FastAPI(title="l3fabric", docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.metrics = ApiMetrics()
    app.state.store = TimedStore(store, app.state.metrics)
    # Added first, so they run last: after authentication and the body limit.
    app.add_middleware(Watches, state=app.state)
    app.add_middleware(Heartbeats, state=app.state)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(Authenticate, authenticator=authenticator)
    # Added last, so it runs first: refused requests (401, 413) are counted too.
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)
    install_error_handlers(app)
    neutron.install(app)
    fabric.install(app)
    anycast.install(app)
    metrics.install(app, app.state.metrics)
    ui.install(app)
    if nova is not None:
        app.state.fabric.status_changed.append(nova.port_status)
        app.state.neutron.ports.removed.append(nova.port_deleted)
    return app
