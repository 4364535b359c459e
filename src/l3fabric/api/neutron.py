"""The Neutron v2.0 HTTP API (``/`` and ``/v2.0``) over ``NeutronService``.

Owns the HTTP shape only: envelopes (``{"port": {...}}``, ``{"ports":
[...]}``), bulk create, status codes, the project header, ``If-Match``, list
queries, and JSON in and out. Semantics live in ``l3fabric.service``.

Responses are serialised here with ``jsontext.dumps`` straight from the
stored dicts: they already are the API objects, and FastAPI's generic
encoder would cost more than the rest of a 10,000-port list. Bodies are
parsed by ``api.body`` (strict JSON, shared with /v1).

Each collection has its own routes, so that /openapi.json documents its
real request body (the pydantic model of ``l3fabric.model.neutron``) and
fuzzers generate real bodies.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from l3fabric.api import neutron_bindings, neutron_meta, neutron_quotas
from l3fabric.api.body import model_schema, openapi_body, read_json
from l3fabric.api.jsontext import dumps
from l3fabric.api.neutron_query import ListQuery, int_attributes, parse_int
from l3fabric.model.neutron import RouterInterfaceBody
from l3fabric.service import Context, NeutronService
from l3fabric.service.common import JSON, Resource
from l3fabric.service.errors import bad_request, not_found

_IF_MATCH = re.compile(r"\s*revision_number=(\S*)\s*")


def _json(data: Any, status: int = 200) -> Response:
    return Response(dumps(data), status_code=status, media_type="application/json")


def _base(request: Request) -> str:
    return str(request.base_url)


def _context(request: Request) -> Context:
    # Established by api.authn before the request got here.
    ctx: Context = request.state.context
    return ctx


# For the other APIs that act for a project (/v1/anycast).
request_context = _context


def _if_match(request: Request) -> int | None:
    header = request.headers.get("if-match")
    if header is None:
        return None
    match = _IF_MATCH.fullmatch(header)
    if match is None:
        raise bad_request(f"Invalid If-Match header {header[:60]!r}: expected revision_number=N")
    return parse_int("the If-Match revision_number", match.group(1), minimum=0)


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


def _schemas(resource: Resource) -> tuple[dict[str, Any], dict[str, Any]]:
    """The OpenAPI bodies of a create (one object or a bulk list) and an update."""
    update = model_schema(resource.model)
    create = {**update, "required": sorted(resource.model.REQUIRED)}
    one = {
        "type": "object",
        "properties": {resource.singular: create},
        "required": [resource.singular],
    }
    many = {
        "type": "object",
        "properties": {resource.plural: {"type": "array", "items": create, "minItems": 1}},
        "required": [resource.plural],
    }
    changed = {
        "type": "object",
        "properties": {resource.singular: update},
        "required": [resource.singular],
    }
    return openapi_body({"oneOf": [one, many]}), openapi_body(changed)


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


# If-Match on updates and deletes, documented so that fuzzers send it too.
_IF_MATCH_PARAMETER = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": "^revision_number=[0-9]+$"},
}


def _list_parameters(ints: frozenset[str]) -> dict[str, Any]:
    """The documented list query: paging, sorting, fields and the integer filters."""
    return {
        "parameters": [
            _query("limit", {"type": "integer", "minimum": 0}),
            _query("marker", {"type": "string"}),
            _query("page_reverse", {"type": "boolean"}),
            _query("fields", {"type": "string"}),
            _query("sort_key", {"type": "string"}),
            _query("sort_dir", {"type": "string", "enum": ["asc", "desc"]}),
            *(_query(name, {"type": "integer"}) for name in sorted(ints)),
        ]
    }


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

    for collection in neutron_meta.RESOURCES:
        _collection_routes(router, service.resource(collection))
    neutron_quotas.install(router, service.quotas, _context)
    neutron_bindings.install(router, service.port_bindings, _context)

    @router.put(
        "/v2.0/routers/{router_id}/{action}",
        openapi_extra=openapi_body(model_schema(RouterInterfaceBody)),
    )
    async def router_interface(router_id: str, action: str, request: Request) -> Response:
        routers = service.routers
        if action == "add_router_interface":
            call = routers.add_interface
        elif action == "remove_router_interface":
            call = routers.remove_interface
        else:
            raise not_found("HTTPNotFound", f"Routers have no action {action!r}.")
        data = await read_json(request)
        info = await run_in_threadpool(call, router_id, data, _context(request))
        return _json(info)

    app.include_router(router)


def _collection_routes(router: APIRouter, resource: Resource) -> None:
    """List, create, show, update and delete of one collection."""
    collection = resource.collection
    ints = int_attributes(resource.model)
    create_body, update_body = _schemas(resource)

    async def list_objects(request: Request) -> Response:
        items = request.query_params.multi_items()
        query = ListQuery.parse(items, ints)
        objects = await run_in_threadpool(resource.list, _context(request), query.filters)
        page, marker = query.apply(objects)
        body: JSON = {resource.plural: page}
        if marker is not None:
            url = f"{_base(request)}v2.0/{collection}"
            body[f"{resource.plural}_links"] = [
                {"rel": "next", "href": query.next_link(url, items, marker)}
            ]
        return _json(body)

    async def create(request: Request) -> Response:
        body = await read_json(request)
        ctx = _context(request)
        if isinstance(body, dict) and resource.plural in body and resource.singular not in body:
            items = body[resource.plural]
            if not isinstance(items, list) or not items:
                raise bad_request(f"'{resource.plural}' must be a non-empty list for a bulk create")
            created = await run_in_threadpool(_create_many, resource, items, ctx)
            return _json({resource.plural: created}, 201)
        obj = await run_in_threadpool(resource.create, _unwrap(body, resource.singular), ctx)
        return _json({resource.singular: obj}, 201)

    async def show(object_id: str, request: Request) -> Response:
        obj = await run_in_threadpool(resource.get, object_id, _context(request))
        fields = ListQuery.parse(request.query_params.multi_items()).fields
        if fields:
            obj = {f: obj[f] for f in fields if f in obj}
        return _json({resource.singular: obj})

    async def update(object_id: str, request: Request) -> Response:
        data = _unwrap(await read_json(request), resource.singular)
        obj = await run_in_threadpool(
            resource.update, object_id, data, _context(request), _if_match(request)
        )
        return _json({resource.singular: obj})

    async def delete(object_id: str, request: Request) -> Response:
        # Checked by the service in the delete's own store transaction.
        await run_in_threadpool(resource.delete, object_id, _context(request), _if_match(request))
        return Response(status_code=204)

    path = f"/v2.0/{collection}"
    name = collection.replace("-", "_")
    router.add_api_route(
        path,
        list_objects,
        methods=["GET"],
        name=f"list_{name}",
        openapi_extra=_list_parameters(ints),
    )
    router.add_api_route(
        path, create, methods=["POST"], name=f"create_{name}", openapi_extra=create_body
    )
    router.add_api_route(f"{path}/{{object_id}}", show, methods=["GET"], name=f"show_{name}")
    router.add_api_route(
        f"{path}/{{object_id}}",
        update,
        methods=["PUT"],
        name=f"update_{name}",
        openapi_extra={**update_body, "parameters": [_IF_MATCH_PARAMETER]},
    )
    router.add_api_route(
        f"{path}/{{object_id}}",
        delete,
        methods=["DELETE"],
        name=f"delete_{name}",
        status_code=204,
        openapi_extra={"parameters": [_IF_MATCH_PARAMETER]},
    )
