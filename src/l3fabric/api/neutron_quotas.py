"""Neutron's quotas API (``/v2.0/quotas``) over ``service.quotas.Quotas``:
list, show (with ``/default`` and ``/details``), update and reset.

Clients may add ``.json`` to each path (openstacksdk asks for ``details.json``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from l3fabric.api.body import read_json
from l3fabric.api.jsontext import dumps
from l3fabric.service.common import Context
from l3fabric.service.errors import not_found
from l3fabric.service.quotas import Quotas


def _json(data: Any) -> Response:
    return Response(dumps(data), media_type="application/json")


def install(router: APIRouter, quotas: Quotas, context: Callable[[Request], Context]) -> None:
    """Mount the quotas routes; ``context`` says who asks."""

    @router.get("/v2.0/quotas")
    @router.get("/v2.0/quotas.json")
    async def list_quotas(request: Request) -> Response:
        return _json(await run_in_threadpool(quotas.list, context(request)))

    @router.get("/v2.0/quotas/{project_id}")
    async def show_quota(project_id: str, request: Request) -> Response:
        project_id = project_id.removesuffix(".json")
        return _json(await run_in_threadpool(quotas.show, project_id, context(request)))

    @router.get("/v2.0/quotas/{project_id}/{view}")
    async def quota_view(project_id: str, view: str, request: Request) -> Response:
        views = {"default": quotas.default, "details": quotas.details}
        call = views.get(view.removesuffix(".json"))
        if call is None:
            raise not_found("HTTPNotFound", f"Quotas have no view {view!r}.")
        return _json(await run_in_threadpool(call, project_id, context(request)))

    @router.put("/v2.0/quotas/{project_id}")
    async def update_quota(project_id: str, request: Request) -> Response:
        project_id = project_id.removesuffix(".json")
        data = await read_json(request)
        return _json(await run_in_threadpool(quotas.update, project_id, data, context(request)))

    @router.delete("/v2.0/quotas/{project_id}", status_code=204)
    async def reset_quota(project_id: str, request: Request) -> Response:
        project_id = project_id.removesuffix(".json")
        await run_in_threadpool(quotas.reset, project_id, context(request))
        return Response(status_code=204)
