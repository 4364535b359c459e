"""The Neutron v2.0 HTTP API (``/`` and ``/v2.0``) over ``NeutronService``.

Owns the HTTP shape only: envelopes (``{"port": {...}}``, ``{"ports":
[...]}``), bulk create, status codes, the project header, ``If-Match``, list
queries, and JSON in and out. Semantics live in ``l3fabric.service``.

Responses are serialised here with ``json.dumps`` straight from the stored
dicts: they already are the API objects, and FastAPI's generic encoder
would cost more than the rest of a 10,000-port list.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from l3fabric.api import neutron_meta
from l3fabric.api.errors import bad_request, not_found
from l3fabric.api.neutron_query import ListQuery
from l3fabric.service import Context, NeutronService
from l3fabric.service.common import DEFAULT_PROJECT, JSON, Resource

_IF_MATCH = re.compile(r"^\s*revision_number=(\d+)\s*$")


def _json(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(body, status_code=status, media_type="application/json")


def _base(request: Request) -> str:
    return str(request.base_url)


def _context(request: Request) -> Context:
    project = request.headers.get("x-project-id") or request.headers.get("x-tenant-id")
    return Context(project or DEFAULT_PROJECT)


def _if_match(request: Request) -> int | None:
    header = request.headers.get("if-match")
    if header is None:
        return None
    match = _IF_MATCH.match(header)
    if match is None:
        raise bad_request(f"Invalid If-Match header {header!r}: expected revision_number=N")
    return int(match.group(1))


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise bad_request("The request body is empty; send a JSON object.", "MalformedRequestBody")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"Malformed request body: {exc}", "MalformedRequestBody") from None


def _unwrap(body: Any, key: str) -> Any:
    if not isinstance(body, dict) or key not in body:
        raise bad_request(f"Unable to find '{key}' in request body", "MalformedRequestBody")
    return body[key]


def _create_many(resource: Resource, items: list[Any], ctx: Context) -> list[JSON]:
    """Bulk create, all or nothing: on a failure the ones already made are deleted."""
    created: list[JSON] = []
    try:
        for item in items:
            created.append(resource.create(item, ctx))
    except BaseException:
        for obj in reversed(created):
            resource.delete(obj["id"], ctx)
        raise
    return created


def install(app: FastAPI) -> None:
    """Mount the Neutron API on ``app``; its store is ``app.state.store``."""
    service = NeutronService(app.state.store)
    app.state.neutron = service
    router = APIRouter()

    @router.get("/")
    async def versions(request: Request) -> Response:
        return _json(neutron_meta.version_document(_base(request)))

    @router.get("/v2.0")
    @router.get("/v2.0/")
    async def resources(request: Request) -> Response:
        return _json(neutron_meta.resources_document(_base(request)))

    @router.get("/v2.0/extensions")
    async def extensions() -> Response:
        return _json({"extensions": neutron_meta.extensions()})

    @router.get("/v2.0/extensions/{alias}")
    async def extension(alias: str) -> Response:
        found = neutron_meta.extension(alias)
        if found is None:
            raise not_found("ExtensionNotFound", f"Extension with alias {alias} does not exist")
        return _json({"extension": found})

    @router.get("/v2.0/{collection}")
    async def list_objects(collection: str, request: Request) -> Response:
        resource = service.resource(collection)
        items = request.query_params.multi_items()
        query = ListQuery.parse(items)
        objects = await run_in_threadpool(resource.list, _context(request), query.filters)
        page, marker = query.apply(objects)
        body: JSON = {resource.plural: page}
        if marker is not None:
            url = f"{_base(request)}v2.0/{collection}"
            body[f"{resource.plural}_links"] = [
                {"rel": "next", "href": query.next_link(url, items, marker)}
            ]
        return _json(body)

    @router.post("/v2.0/{collection}")
    async def create(collection: str, request: Request) -> Response:
        resource = service.resource(collection)
        body = await _body(request)
        ctx = _context(request)
        if isinstance(body, dict) and resource.plural in body and resource.singular not in body:
            items = body[resource.plural]
            if not isinstance(items, list) or not items:
                raise bad_request(f"'{resource.plural}' must be a non-empty list for a bulk create")
            created = await run_in_threadpool(_create_many, resource, items, ctx)
            return _json({resource.plural: created}, 201)
        obj = await run_in_threadpool(resource.create, _unwrap(body, resource.singular), ctx)
        return _json({resource.singular: obj}, 201)

    @router.get("/v2.0/{collection}/{object_id}")
    async def show(collection: str, object_id: str, request: Request) -> Response:
        resource = service.resource(collection)
        obj = await run_in_threadpool(resource.get, object_id, _context(request))
        fields = ListQuery.parse(request.query_params.multi_items()).fields
        if fields:
            obj = {f: obj[f] for f in fields if f in obj}
        return _json({resource.singular: obj})

    @router.put("/v2.0/{collection}/{object_id}")
    async def update(collection: str, object_id: str, request: Request) -> Response:
        resource = service.resource(collection)
        data = _unwrap(await _body(request), resource.singular)
        obj = await run_in_threadpool(
            resource.update, object_id, data, _context(request), _if_match(request)
        )
        return _json({resource.singular: obj})

    @router.delete("/v2.0/{collection}/{object_id}")
    async def delete(collection: str, object_id: str, request: Request) -> Response:
        resource = service.resource(collection)
        # Checked by the service in the delete's own store transaction.
        await run_in_threadpool(resource.delete, object_id, _context(request), _if_match(request))
        return Response(status_code=204)

    @router.put("/v2.0/routers/{router_id}/{action}")
    async def router_interface(router_id: str, action: str, request: Request) -> Response:
        routers = service.routers
        if action == "add_router_interface":
            call = routers.add_interface
        elif action == "remove_router_interface":
            call = routers.remove_interface
        else:
            raise not_found("HTTPNotFound", f"Routers have no action {action!r}.")
        data = await _body(request)
        info = await run_in_threadpool(call, router_id, data, _context(request))
        return _json(info)

    app.include_router(router)
