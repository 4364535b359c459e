"""Neutron's ``binding-extended`` API over ``service.port_bindings``:
``/v2.0/ports/{port_id}/bindings`` (list, create), ``.../bindings/{host}``
(show, update, delete) and ``.../bindings/{host}/activate``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from l3fabric.api.body import model_schema, openapi_body, read_json
from l3fabric.api.jsontext import dumps
from l3fabric.service.common import Context
from l3fabric.service.errors import bad_request
from l3fabric.service.port_bindings import BindingBody, PortBindings

_PATH = "/v2.0/ports/{port_id}/bindings"


def _json(data: Any, status: int = 200) -> Response:
    return Response(dumps(data), status_code=status, media_type="application/json")


def _binding(body: Any) -> Any:
    if not isinstance(body, dict) or "binding" not in body:
        raise bad_request("Unable to find 'binding' in request body", "MalformedRequestBody")
    return body["binding"]


def install(
    router: APIRouter, bindings: PortBindings, context: Callable[[Request], Context]
) -> None:
    """Mount the port binding routes; ``context`` says who asks."""
    schema = openapi_body(
        {
            "type": "object",
            "properties": {"binding": model_schema(BindingBody)},
            "required": ["binding"],
        }
    )

    @router.get(_PATH)
    async def list_bindings(port_id: str, request: Request) -> Response:
        filters: dict[str, list[str]] = {}
        for name, value in request.query_params.multi_items():
            if name in ("host", "vif_type", "vnic_type", "status"):
                filters.setdefault(name, []).append(value)
        found = await run_in_threadpool(bindings.list, port_id, context(request), filters)
        return _json({"bindings": found})

    @router.post(_PATH, openapi_extra=schema)
    async def create_binding(port_id: str, request: Request) -> Response:
        data = _binding(await read_json(request))
        made = await run_in_threadpool(bindings.create, port_id, data, context(request))
        return _json({"binding": made}, 201)

    @router.get(_PATH + "/{host}")
    async def show_binding(port_id: str, host: str, request: Request) -> Response:
        found = await run_in_threadpool(bindings.get, port_id, host, context(request))
        return _json({"binding": found})

    @router.put(_PATH + "/{host}", openapi_extra=schema)
    async def update_binding(port_id: str, host: str, request: Request) -> Response:
        data = _binding(await read_json(request))
        new = await run_in_threadpool(bindings.update, port_id, host, data, context(request))
        return _json({"binding": new})

    @router.put(_PATH + "/{host}/activate")
    async def activate_binding(port_id: str, host: str, request: Request) -> Response:
        new = await run_in_threadpool(bindings.activate, port_id, host, context(request))
        return _json({"binding": new})

    @router.delete(_PATH + "/{host}", status_code=204)
    async def delete_binding(port_id: str, host: str, request: Request) -> Response:
        await run_in_threadpool(bindings.delete, port_id, host, context(request))
        return Response(status_code=204)
