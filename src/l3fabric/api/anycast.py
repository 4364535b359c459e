"""The anycast HTTP routes (``/v1/anycast``) over ``l3fabric.service.anycast.AnycastGroups``
(``NeutronService.anycast``).

Owns the HTTP shape only (plain JSON bodies as the rest of /v1, status
codes); validation and semantics live in the service.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response

from l3fabric.api.body import JsonBody, openapi_body
from l3fabric.api.jsontext import JsonRoute
from l3fabric.auth.base import agent_of
from l3fabric.service.anycast import AnycastCreate, AnycastUpdate, StatusReport
from l3fabric.service.neutron import NeutronService

_MEMBER = {
    "type": "object",
    "properties": {"port_id": {"type": "string", "minLength": 1}},
    "required": ["port_id"],
}


def install(app: FastAPI) -> None:
    """Mount /v1/anycast on ``app``; reuses the Neutron service (and its IPAM) when mounted."""
    neutron = getattr(app.state, "neutron", None) or NeutronService(app.state.store)
    groups = neutron.anycast
    app.state.anycast = groups
    router = APIRouter(prefix="/v1/anycast", route_class=JsonRoute)

    # Plain (sync) functions: FastAPI runs them in its thread pool, as store calls block.
    @router.get("")
    def list_groups() -> dict[str, Any]:
        return {"anycast": groups.list()}

    @router.post("", status_code=201, openapi_extra=openapi_body(AnycastCreate))
    def create(payload: JsonBody) -> dict[str, Any]:
        return groups.create(payload)

    @router.get("/{anycast_id}")
    def show(anycast_id: str) -> dict[str, Any]:
        return groups.get(anycast_id)

    @router.put("/{anycast_id}", openapi_extra=openapi_body(AnycastUpdate))
    def update(anycast_id: str, payload: JsonBody) -> dict[str, Any]:
        return groups.update(anycast_id, payload)

    @router.delete("/{anycast_id}", status_code=204)
    def delete(anycast_id: str) -> Response:
        groups.delete(anycast_id)
        return Response(status_code=204)

    @router.post("/{anycast_id}/members", openapi_extra=openapi_body(_MEMBER))
    def add_member(anycast_id: str, payload: JsonBody) -> dict[str, Any]:
        return groups.add_member(anycast_id, payload)

    @router.delete("/{anycast_id}/members/{port_id}")
    def remove_member(anycast_id: str, port_id: str) -> dict[str, Any]:
        return groups.remove_member(anycast_id, port_id)

    @router.post("/{anycast_id}/status", openapi_extra=openapi_body(StatusReport))
    def report_status(anycast_id: str, payload: JsonBody, request: Request) -> dict[str, Any]:
        # A host agent reports only as itself and only on ports bound to it (api.authn).
        agent = agent_of(request.state.context)
        return groups.report_status(anycast_id, payload, as_host=agent[1] if agent else None)

    app.include_router(router)
