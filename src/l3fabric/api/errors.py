"""Neutron-shaped errors: every error leaves as ``{"NeutronError": {...}}``.

The services raise transport-free ``l3fabric.service.errors``; this module
alone maps them to HTTP statuses, next to FastAPI's own failures.

The OpenStack clients show ``message`` to the user only when the body has
this shape and ``Content-Type: application/json``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from l3fabric.api.jsontext import JsonResponse
from l3fabric.service.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    PreconditionFailed,
    ServiceError,
    Unavailable,
)
from l3fabric.store import StoreUnavailableError

log = logging.getLogger(__name__)


# The one place a service's refusal gets its HTTP status.
_STATUS: dict[type[ServiceError], int] = {
    BadRequest: 400,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
    PreconditionFailed: 412,
    Unavailable: 503,
}


def status_of(exc: ServiceError) -> int:
    """The HTTP status of a service error (500 for a kind nobody mapped yet)."""
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 500


def error_response(
    status: int, type_: str, message: str, detail: str = "", headers: dict[str, str] | None = None
) -> JsonResponse:
    # JsonResponse: a message that echoes odd input still encodes.
    body = {"NeutronError": {"type": type_, "message": message, "detail": detail}}
    return JsonResponse(body, status_code=status, headers=headers)


_HTTP_TYPES = {
    400: "BadRequest",
    401: "HTTPUnauthorized",
    403: "HTTPForbidden",
    404: "HTTPNotFound",
    405: "HTTPMethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    413: "RequestEntityTooLarge",
    415: "HTTPUnsupportedMediaType",
}


def response_for(exc: Exception) -> JsonResponse:
    """The Neutron error body of a failure (the one mapping for FastAPI's handlers and
    for routes served without FastAPI, api/heartbeats.py)."""
    if isinstance(exc, StoreUnavailableError):
        # Raised from any service call: the request changed nothing we know of.
        log.warning("store unavailable: %s", exc)
        exc = Unavailable("ServiceUnavailable", "The store is unavailable; retry later.", str(exc))
    if isinstance(exc, ServiceError):
        status = status_of(exc)
        if status == 500:
            log.error("no HTTP status for %s: %s", type(exc).__name__, exc)
        return error_response(status, exc.type, exc.message, exc.detail)
    if isinstance(exc, StarletteHTTPException):
        type_ = _HTTP_TYPES.get(exc.status_code, "HTTPError")
        return error_response(exc.status_code, type_, str(exc.detail))
    if isinstance(exc, ClientDisconnect):
        # The client left, or the server cut a body that came too slowly
        # (docs/api.md, Limits): not a server error, and nobody reads this.
        log.debug("client disconnected before its request body was complete")
        return error_response(400, "MalformedRequestBody", "The request body was cut off.")
    log.exception("unexpected error: %s", exc)
    # Starlette re-raises after this answer and uvicorn then drops the
    # connection; saying so keeps a keep-alive client from meeting a reset.
    return error_response(
        500, "InternalError", "Internal error; see the server log.", headers={"Connection": "close"}
    )


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure, including ones FastAPI raises itself, to a Neutron body."""

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JsonResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"
            for err in exc.errors()
        )
        # Bodies are parsed by api.body; what FastAPI validates is the query and path.
        in_body = any(err.get("loc", ("",))[0] == "body" for err in exc.errors())
        type_ = "MalformedRequestBody" if in_body else "InvalidInput"
        return error_response(400, type_, f"Malformed request: {problems}")

    async def _other(_: Request, exc: Exception) -> JsonResponse:
        return response_for(exc)

    for kind in (
        ServiceError,
        StoreUnavailableError,
        StarletteHTTPException,
        ClientDisconnect,
        Exception,
    ):
        app.add_exception_handler(kind, _other)
