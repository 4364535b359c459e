"""The live picture of the fabric (``/ui``) and the two reads it is made of.

- ``GET /ui`` and ``GET /ui/<asset>``: the page and its script and style,
  shipped in the package (no CDN: it works where the controller has no
  internet). Open to everyone: they carry no data; the page asks the API
  for everything with the operator's token.
- ``GET /v1/health``: every host's and gateway's health as ``l3fabric
  status`` reports it (``l3fabric.fabric_health``); admin only, like /v1.
- ``GET /v1/trace?query=ADDRESS_OR_VM``: what ``l3fabric trace`` shows
  (``l3fabric.fabric_trace``), for the page's search box.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from l3fabric.api.jsontext import JsonRoute
from l3fabric.api.neutron import request_context
from l3fabric.fabric_health import assess
from l3fabric.fabric_trace import trace
from l3fabric.service import Context, NeutronService
from l3fabric.service.errors import bad_request, not_found
from l3fabric.service.fabric import FabricService

_ASSETS = resources.files("l3fabric.ui")
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
# The page's files, by URL name; nothing else under /ui is served.
_SERVED = {"": "index.html", "app.js": "app.js", "app.css": "app.css"}
# Longer queries name nothing: an address, a UUID or a VM name fits.
_MAX_QUERY = 255


def install(app: FastAPI) -> None:
    """Add the page and ``/v1/health`` and ``/v1/trace`` to ``app``."""
    app.include_router(_page_router())
    app.include_router(_data_router(app.state.neutron, app.state.fabric))


def _page_router() -> APIRouter:
    router = APIRouter()

    @router.get("/ui", include_in_schema=False)
    @router.get("/ui/", include_in_schema=False)
    @router.get("/ui/{name}", include_in_schema=False)
    def asset(name: str = "") -> Response:
        file = _SERVED.get(name)
        if file is None:
            raise not_found("NotFound", f"/ui/{name} is not part of the page.")
        media = _TYPES[file[file.rindex(".") :]]
        # no-cache: after an upgrade the page and its script must match.
        return Response(
            (_ASSETS / file).read_bytes(), media_type=media, headers={"Cache-Control": "no-cache"}
        )

    return router


def _data_router(neutron: NeutronService, fabric: FabricService) -> APIRouter:
    router = APIRouter(prefix="/v1", route_class=JsonRoute)

    @router.get("/health")
    def health() -> dict[str, Any]:
        nodes = assess(fabric.hosts.list(), fabric.gateways.list(), time.time())
        return {
            "degraded": any(not n.healthy for n in nodes),
            "nodes": [n.to_json() for n in nodes],
        }

    @router.get("/trace")
    async def trace_(request: Request, query: str) -> dict[str, Any]:
        query = query.strip()
        if not query or len(query) > _MAX_QUERY:
            raise bad_request(f"query must be 1 to {_MAX_QUERY} characters")
        ctx = request_context(request)
        return {"trace": await run_in_threadpool(_trace, neutron, fabric, ctx, query)}

    return router


def _trace(
    neutron: NeutronService, fabric: FabricService, ctx: Context, query: str
) -> list[dict[str, Any]]:
    def all_(collection: str) -> list[dict[str, Any]]:
        return neutron.resource(collection).list(ctx, {})

    return trace(
        query,
        ports=all_("ports"),
        networks=all_("networks"),
        groups=all_("security-groups"),
        floatingips=all_("floatingips"),
        hosts=fabric.hosts.list(),
        gateways=fabric.gateways.list(),
    )
