"""Neutron-shaped errors: every error leaves as ``{"NeutronError": {...}}``.

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

log = logging.getLogger(__name__)


class NeutronError(Exception):
    """An API error with Neutron's type name and HTTP status."""

    def __init__(self, status: int, type_: str, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.detail = detail


def bad_request(message: str, type_: str = "InvalidInput") -> NeutronError:
    return NeutronError(400, type_, message)


def not_found(type_: str, message: str) -> NeutronError:
    return NeutronError(404, type_, message)


def conflict(type_: str, message: str) -> NeutronError:
    return NeutronError(409, type_, message)


def error_response(
    status: int, type_: str, message: str, detail: str = "", headers: dict[str, str] | None = None
) -> JsonResponse:
    # JsonResponse: a message that echoes odd input still encodes.
    body = {"NeutronError": {"type": type_, "message": message, "detail": detail}}
    return JsonResponse(body, status_code=status, headers=headers)


_HTTP_TYPES = {
    400: "BadRequest",
    404: "HTTPNotFound",
    405: "HTTPMethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    413: "RequestEntityTooLarge",
    415: "HTTPUnsupportedMediaType",
}


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure, including ones FastAPI raises itself, to a Neutron body."""

    @app.exception_handler(NeutronError)
    async def _neutron(_: Request, exc: NeutronError) -> JsonResponse:
        return error_response(exc.status, exc.type, exc.message, exc.detail)

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

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JsonResponse:
        type_ = _HTTP_TYPES.get(exc.status_code, "HTTPError")
        return error_response(exc.status_code, type_, str(exc.detail))

    @app.exception_handler(ClientDisconnect)
    async def _gone(_: Request, exc: ClientDisconnect) -> JsonResponse:
        # The client left, or the server cut a body that came too slowly
        # (docs/api.md, Limits): not a server error, and nobody reads this.
        log.debug("client disconnected before its request body was complete")
        return error_response(400, "MalformedRequestBody", "The request body was cut off.")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JsonResponse:
        log.exception("unexpected error: %s", exc)
        # Starlette re-raises after this answer and uvicorn then drops the
        # connection; saying so keeps a keep-alive client from meeting a reset.
        return error_response(
            500,
            "InternalError",
            "Internal error; see the server log.",
            headers={"Connection": "close"},
        )
