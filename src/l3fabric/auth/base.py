"""The authenticator interface and ``--auth none``.

An ``Authenticator`` turns a request's headers into the caller's ``Context``
or None (a 401). ``--auth tokens`` (``l3fabric.auth.tokens``) and
``--auth keystone`` plug in here; the API's middleware (``l3fabric.api.authn``)
calls it before anything else about the request is processed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from l3fabric.service.common import DEFAULT_PROJECT, Context

# Agent roles: ``host:NAME`` (a host agent) and ``gateway:NAME`` (a gateway agent).
AGENT_KINDS = ("host", "gateway")


class Authenticator(Protocol):
    """Turns request headers (lower-case names) into a Context, or None for a 401."""

    # True when ``authenticate`` blocks (e.g. asks Keystone): it then runs in a thread.
    blocking: bool

    def authenticate(self, headers: Mapping[str, str]) -> Context | None: ...

    def reload(self) -> None:
        """Re-read credentials (SIGHUP); keeps the old ones when the new ones are bad."""


class NoAuth:
    """``--auth none``: every caller is an admin acting for the project it names
    (X-Project-Id), as Neutron's noauth mode."""

    blocking = False

    def authenticate(self, headers: Mapping[str, str]) -> Context:
        project = headers.get("x-project-id") or headers.get("x-tenant-id")
        return Context(project or DEFAULT_PROJECT)

    def reload(self) -> None:
        """Nothing to re-read."""


def agent_of(ctx: Context) -> tuple[str, str] | None:
    """``(kind, name)`` when the caller is an agent (role ``host:NAME`` or
    ``gateway:NAME``), else None. An admin is never treated as an agent."""
    if ctx.is_admin:
        return None
    for role in sorted(ctx.roles):
        kind, sep, name = role.partition(":")
        if sep and kind in AGENT_KINDS and name:
            return kind, name
    return None
