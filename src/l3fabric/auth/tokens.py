"""``--auth tokens``: credentials from a token file, re-read on SIGHUP.

The file has one credential a line, ``TOKEN PROJECT_ID ROLES``: ROLES is
comma-separated (``admin``, ``member``, ``reader``, or an agent's
``host:NAME`` / ``gateway:NAME``). ``#`` starts a comment; blank lines are
ignored.

Tokens are looked up by their SHA-256 digest, never by the token itself: the
dict's comparisons then see only digests, whose timing tells nothing about
how much of a guessed token was right (finding a token that matches a digest
prefix is a preimage search). The one candidate found is then compared with
``hmac.compare_digest``. So the check takes the same time whatever the guess
and however many tokens there are.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from l3fabric.auth.base import AGENT_KINDS
from l3fabric.service.common import Context

log = logging.getLogger(__name__)

_PROJECT = re.compile(r"[A-Za-z0-9_.@-]{1,255}")
_ROLE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# Shorter tokens are guessable; refuse them rather than trust them.
MIN_TOKEN_CHARS = 16


class TokenFileError(Exception):
    """The token file cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Credential:
    digest: bytes
    context: Context


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _check_role(role: str) -> str | None:
    """Why ``role`` is not a role, or None."""
    kind, sep, name = role.partition(":")
    if sep:
        if kind not in AGENT_KINDS:
            return f"role {role!r}: only host:NAME and gateway:NAME have a colon"
        if not _AGENT_NAME.fullmatch(name):
            return f"role {role!r}: {name!r} is not a host or gateway name"
        return None
    if not _ROLE.fullmatch(role):
        return f"role {role!r} is not a role name"
    return None


def parse_token_file(text: str, source: str) -> dict[bytes, Credential]:
    """The credentials of a token file's ``text``, keyed by token digest."""
    creds: dict[bytes, Credential] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source} line {number}"
        fields = line.split()
        if len(fields) != 3:
            raise TokenFileError(
                f"{where}: expected TOKEN PROJECT_ID ROLES, got {len(fields)} field(s)"
            )
        token, project, role_text = fields
        if len(token) < MIN_TOKEN_CHARS:
            raise TokenFileError(f"{where}: the token is shorter than {MIN_TOKEN_CHARS} characters")
        if not _PROJECT.fullmatch(project):
            raise TokenFileError(f"{where}: {project!r} is not a project id")
        roles = role_text.split(",")
        for role in roles:
            problem = _check_role(role)
            if problem:
                raise TokenFileError(f"{where}: {problem}")
        digest = _digest(token)
        if digest in creds:
            raise TokenFileError(f"{where}: this token is already on an earlier line")
        # user_id: a stable, non-secret name for the credential in logs.
        ctx = Context(project, frozenset(roles), user_id=f"token-{digest.hex()[:8]}")
        creds[digest] = Credential(digest, ctx)
    return creds


def read_token_file(path: str | Path) -> dict[bytes, Credential]:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"cannot read the token file {path}: {exc}") from None
    return parse_token_file(text, str(path))


class TokenAuth:
    """Authenticates ``X-Auth-Token`` against the token file."""

    blocking = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._creds = read_token_file(self.path)  # a bad file at start is fatal
        log.info("token file %s: %d credential(s)", self.path, len(self._creds))

    def authenticate(self, headers: Mapping[str, str]) -> Context | None:
        token = headers.get("x-auth-token")
        if not token:
            return None
        digest = _digest(token)
        found = self._creds.get(digest)
        if found is None or not hmac.compare_digest(found.digest, digest):
            return None
        return found.context

    def reload(self) -> None:
        """Re-read the file; on any problem keep the credentials in force and say why."""
        try:
            creds = read_token_file(self.path)
        except TokenFileError as exc:
            log.error("token file not reloaded, the old credentials stay: %s", exc)
            return
        self._creds = creds  # one reference swap: requests see the old or the new set
        log.info("token file %s reloaded: %d credential(s)", self.path, len(creds))
