"""ASGI middleware: every request but the version document is authenticated
before the app sees it; the result is the request's service Context.

An ``Authenticator`` turns request headers into a Context or raises
``Unauthenticated``; it may block (a Keystone round trip), so it runs in a
worker thread. A refused request gets a Neutron error body and never reaches
the app, so nothing else about it is processed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from anyio import to_thread
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from l3fabric.api.errors import error_response
from l3fabric.service import Context

# Neutron serves its version list to anyone: clients read it before they authenticate.
PUBLIC_PATHS = frozenset({"/"})
_STATE_KEY = "context"


class Unauthenticated(Exception):
    """The request carries no acceptable credential (or the identity service failed)."""

    def __init__(
        self, message: str, status: int = 401, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = dict(headers or {})


class Authenticator(Protocol):
    def authenticate(self, headers: Headers) -> Context:
        """The caller's Context, or raise Unauthenticated."""
        ...


_TYPES = {401: "Unauthorized", 503: "ServiceUnavailable"}


class Authenticate:
    """Puts the authenticated Context on ``request.state.context`` or answers itself."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        try:
            ctx = await to_thread.run_sync(self.authenticator.authenticate, Headers(scope=scope))
        except Unauthenticated as exc:
            kind = _TYPES.get(exc.status, "Unauthorized")
            response = error_response(exc.status, kind, exc.message, headers=exc.headers)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})[_STATE_KEY] = ctx
        await self.app(scope, receive, send)


def authenticated(request: Request) -> Context | None:
    """The Context the middleware established, or None when the server runs without auth."""
    return request.scope.get("state", {}).get(_STATE_KEY)
