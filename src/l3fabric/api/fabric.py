"""The fabric HTTP routes (/v1): fabric configuration, gateways, hosts, heartbeats and the watch.

Owns the HTTP shape only: paths, status codes, plain JSON bodies (parsed by
``api.body``, results through ``jsontext``), and running long polls on their
own threads. Semantics live in ``l3fabric.service.fabric`` (configuration,
registries, heartbeats), ``l3fabric.service.watch`` (snapshot and events) and
``l3fabric.service.fanout`` (one reader of the change log for every long poll).
"""

from __future__ import annotations

import threading
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Request, Response

from l3fabric.api.body import JsonBody, openapi_body
from l3fabric.api.jsontext import JsonResponse, JsonRoute
from l3fabric.api.metrics import counted_watch
from l3fabric.model.fabric import FabricConfig, GatewayHeartbeat, HostHeartbeat
from l3fabric.service.fabric import FabricService, Registry
from l3fabric.service.fanout import WatchHub
from l3fabric.service.watch import WATCH_DEFAULT_TIMEOUT_S, check_watch, snapshot


def install(app: FastAPI) -> None:
    """Add the /v1 routes to ``app`` (whose ``state.store`` is the store)."""
    # Set by the server on shutdown, so long polls end at once.
    if not hasattr(app.state, "stopping"):
        app.state.stopping = threading.Event()
    app.state.fabric = FabricService(app.state.store)
    # One reader of the change log for all of this controller's long polls
    # (started by the first one; the server stops it on shutdown).
    app.state.watch_hub = WatchHub(app.state.store)
    app.include_router(_router(app.state.fabric, app.state.watch_hub))


def _router(fabric: FabricService, hub: WatchHub) -> APIRouter:
    router = APIRouter(prefix="/v1", route_class=JsonRoute)

    # Plain (sync) functions: FastAPI runs them in its thread pool, as store calls block.
    @router.get("/fabric")
    def get_fabric() -> dict[str, Any]:
        return fabric.config()

    @router.put("/fabric", openapi_extra=openapi_body(FabricConfig))
    def put_fabric(payload: JsonBody) -> dict[str, Any]:
        return fabric.set_config(payload)

    _registry_routes(router, fabric.hosts)
    _registry_routes(router, fabric.gateways)

    # Served by api/heartbeats.py in front of FastAPI; kept here for /openapi.json.
    @router.post("/hosts/{name}/heartbeat", openapi_extra=openapi_body(HostHeartbeat))
    def host_heartbeat(name: str, payload: JsonBody) -> dict[str, Any]:
        return fabric.host_heartbeat(name, payload)

    @router.post("/gateways/{name}/drain")
    def drain_gateway(name: str) -> dict[str, Any]:
        # Drained: the gateway stops attracting new flows (docs/gateway.md, "Drain").
        return fabric.drain_gateway(name, True)

    @router.delete("/gateways/{name}/drain")
    def undrain_gateway(name: str) -> dict[str, Any]:
        return fabric.drain_gateway(name, False)

    @router.post("/gateways/{name}/heartbeat", openapi_extra=openapi_body(GatewayHeartbeat))
    def gateway_heartbeat(name: str, payload: JsonBody) -> dict[str, Any]:
        return fabric.gateway_heartbeat(name, payload)

    @router.get("/watch")
    async def watch(
        request: Request,
        host: str,
        since: int | None = None,
        timeout: float = WATCH_DEFAULT_TIMEOUT_S,
    ) -> dict[str, Any]:
        check_watch(host, since, timeout)
        if since is None:
            # The hub follows the store from before the snapshot's revision, so
            # the watch from it is served by the hub, not from the store.
            await anyio.to_thread.run_sync(hub.start)
            return await anyio.to_thread.run_sync(snapshot, fabric.store, host)
        state = request.app.state
        # On the event loop: a waiting watch holds no thread (service/fanout.py).
        with counted_watch(getattr(state, "metrics", None), hub.revision - since):
            return await hub.watch_async(host, since, timeout, state.stopping)

    return router


def _registry_routes(router: APIRouter, registry: Registry) -> None:
    """List, show, register (PUT: 201 when new) and delete for hosts or gateways."""
    plural = f"{registry.kind}s"

    def list_() -> dict[str, Any]:
        return {plural: registry.list()}

    def show(name: str) -> dict[str, Any]:
        return registry.show(name)

    def register(name: str, payload: JsonBody) -> Response:
        record, created = registry.register(name, payload)
        return JsonResponse(record, status_code=201 if created else 200)

    def delete(name: str) -> Response:
        registry.delete(name)
        return Response(status_code=204)

    router.add_api_route(f"/{plural}", list_, methods=["GET"])
    router.add_api_route(f"/{plural}/{{name}}", show, methods=["GET"])
    router.add_api_route(
        f"/{plural}/{{name}}", register, methods=["PUT"], openapi_extra=openapi_body(registry.model)
    )
    router.add_api_route(f"/{plural}/{{name}}", delete, methods=["DELETE"], status_code=204)
