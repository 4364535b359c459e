"""Builds the controller's ASGI application over a store."""

from __future__ import annotations

from fastapi import FastAPI

from l3fabric.api import anycast, fabric, neutron
from l3fabric.api.errors import install_error_handlers
from l3fabric.store import Store


def create_app(store: Store) -> FastAPI:
    """The whole API, stateless over ``store`` (several servers may share one store)."""
    app = FastAPI(title="l3fabric", docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.store = store
    install_error_handlers(app)
    neutron.install(app)
    fabric.install(app)
    anycast.install(app)
    return app
