"""Authentication and who-may-call-what, before anything else about a request runs.

An ASGI middleware: it asks the server's ``Authenticator`` who the caller is
(401 when nobody), checks the caller may use this method and path (403), and
leaves the ``Context`` in ``request.state.context`` for the routes. It never
reads the body, so a refused request's body is never parsed or stored.

What each kind of caller may do (docs/security.md):
- admin: everything.
- an agent (``host:NAME``, ``gateway:NAME``): read the fabric config and the
  host and gateway registries (what its BIRD config is made of; its watch
  carries the same), its own watch (``/v1/watch?host=NAME``), its own
  heartbeat; a host agent also reports anycast status (the route checks the
  report is its own). Nothing else: no /v2.0, no change to the fabric.
- anyone else (member, reader): /v2.0 (the service layer decides what each
  project sees); /v1 is the operator's API, admin only.
- nobody needs a token for the version document and the page of /ui (its
  data comes from /v1 with the viewer's token).
"""

from __future__ import annotations

import re

import anyio.to_thread
from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from l3fabric.api.errors import error_response
from l3fabric.auth.base import Authenticator, AuthUnavailable, NoAuth, agent_of
from l3fabric.service.common import Context

# Open to everyone, as Neutron's version document; and the health and metrics
# pages (api/metrics.py), which load balancers and Prometheus call without a token.
_OPEN = {("GET", "/"), ("HEAD", "/"), *(("GET", p) for p in ("/metrics", "/healthz", "/readyz"))}
# The live picture's page and assets (api/ui.py): no data in them, the page
# asks the API for everything with the operator's token.
_PAGE = re.compile(r"^/ui(/[A-Za-z0-9_.-]*)?$")
_AGENT_READS = re.compile(r"^/v1/(fabric|hosts|gateways)(/[^/]+)?/?$")
_HEARTBEAT = re.compile(r"^/v1/(host|gateway)s/([^/]+)/heartbeat$")
_ANYCAST_STATUS = re.compile(r"^/v1/anycast/[^/]+/status$")


def refusal(ctx: Context, method: str, path: str, query: QueryParams) -> str | None:
    """Why ``ctx`` may not call ``method path``, or None when it may."""
    if ctx.is_admin:
        return None
    agent = agent_of(ctx)
    if agent is None:
        if path == "/v1" or path.startswith("/v1/"):
            return "The fabric API (/v1) is for admins only."
        return None
    kind, name = agent
    read = method in ("GET", "HEAD")
    if read and _AGENT_READS.match(path):
        return None
    if read and path == "/v1/watch":
        if query.get("host") == name:
            return None
        return f"{kind} {name} may watch only its own state (host={name})."
    beat = _HEARTBEAT.match(path)
    if method == "POST" and beat:
        if beat.groups() == (kind, name):
            return None
        return f"{kind} {name} may send only its own heartbeat."
    if method == "POST" and kind == "host" and _ANYCAST_STATUS.match(path):
        return None  # the route checks the report is this host's own
    return f"{kind} {name} may not call {method} {path}."


class Authenticate:
    """ASGI middleware: 401 for an unknown caller, 403 for a call it may not make."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator | None = None) -> None:
        self.app = app
        self.authenticator: Authenticator = authenticator or NoAuth()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        if (method, path) in _OPEN or (method in ("GET", "HEAD") and _PAGE.match(path)):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            if self.authenticator.blocking:
                ctx = await anyio.to_thread.run_sync(self.authenticator.authenticate, headers)
            else:
                ctx = self.authenticator.authenticate(headers)
        except AuthUnavailable as exc:
            response = error_response(503, "ServiceUnavailable", str(exc))
            await response(scope, receive, send)
            return
        if ctx is None:
            # Closing: the body of a request we refuse is not worth reading.
            response = error_response(
                401,
                "HTTPUnauthorized",
                "Authentication required: send a valid X-Auth-Token.",
                headers={"WWW-Authenticate": "X-Auth-Token", "Connection": "close"},
            )
            await response(scope, receive, send)
            return
        why = refusal(ctx, method, path, QueryParams(scope.get("query_string", b"")))
        if why is not None:
            response = error_response(403, "HTTPForbidden", why, headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["context"] = ctx
        await self.app(scope, receive, send)
