"""``--auth keystone``: keystonemiddleware's ``auth_token`` validates the token.

``auth_token`` is WSGI middleware. We run it as a library: each request's
token headers go through it in a minimal WSGI environ, in front of a tiny app
that only records what ``auth_token`` established (X-Identity-Status,
X-Project-Id, X-Roles, X-User-Id). Validating with Keystone, the token
cache and service tokens are ``auth_token``'s own behaviour, configured from
the ``[keystone_authtoken]`` section of an oslo.config file.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from l3fabric.auth.base import AuthUnavailable
from l3fabric.service.common import Context

log = logging.getLogger(__name__)

# The only request headers auth_token needs. The environ is built afresh, so
# identity headers a client sends itself (X-Project-Id, X-Roles) never get in.
_PASSED = ("x-auth-token", "x-service-token")
_IDENTITY = "HTTP_X_IDENTITY_STATUS"


class KeystoneConfigError(Exception):
    """The Keystone configuration file is missing or unusable."""


def _environ(headers: Mapping[str, str]) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "SERVER_NAME": "l3fabric",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": io.StringIO(),
    }
    for name in _PASSED:
        value = headers.get(name)
        if value is not None:
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


class KeystoneAuth:
    """``--auth keystone``: X-Auth-Token validated by Keystone; the token's
    project, roles and user are the Context."""

    # Each new token is a round trip to Keystone (auth_token caches the answer).
    blocking = True

    def __init__(self, config_file: Path) -> None:
        # Imported here: keystonemiddleware is an optional extra ([keystone]).
        try:
            from keystonemiddleware.auth_token import AuthProtocol
            from oslo_config import cfg
        except ImportError as exc:
            raise KeystoneConfigError(
                f"--auth keystone needs keystonemiddleware: pip install 'l3fabric[keystone]' ({exc})"
            ) from None
        if not config_file.is_file():
            raise KeystoneConfigError(f"the Keystone configuration {config_file} is not a file")
        conf = {"oslo_config_project": "l3fabric", "oslo_config_file": str(config_file)}
        try:
            self._auth_token = AuthProtocol(_record_identity, conf)
        except (cfg.Error, ValueError) as exc:
            raise KeystoneConfigError(f"the Keystone configuration {config_file}: {exc}") from None

    def authenticate(self, headers: Mapping[str, str]) -> Context | None:
        environ = _environ(headers)
        status: list[str] = []

        def start_response(line: str, hdrs: list[tuple[str, str]], exc_info: Any = None) -> None:
            status.append(line)

        try:
            # auth_token writes the identity into this very environ before it calls the app.
            b"".join(self._auth_token(environ, start_response))
        except Exception as exc:  # a failure to ask Keystone is its outage, never a 500
            log.exception("keystonemiddleware failed")
            raise AuthUnavailable("The identity service (Keystone) is unavailable.") from exc
        if environ.get(_IDENTITY) != "Confirmed":
            # auth_token answered itself: 401, or 503 when it could not ask Keystone.
            if status and status[0].startswith("503"):
                raise AuthUnavailable("The identity service (Keystone) is unavailable.")
            return None
        project = environ.get("HTTP_X_PROJECT_ID")
        if not project:
            # Neutron's resources belong to projects: a domain or system token names none.
            return None
        roles = environ.get("HTTP_X_ROLES", "")
        return Context(
            project_id=project,
            roles=frozenset(role.strip() for role in roles.split(",") if role.strip()),
            user_id=environ.get("HTTP_X_USER_ID"),
        )

    def reload(self) -> None:
        """Nothing to re-read: Keystone holds the credentials."""


def _record_identity(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The app behind auth_token: reached only with a confirmed identity, which is now in environ."""
    start_response("204 No Content", [])
    return []
