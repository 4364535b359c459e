"""What the agents and the ``l3fabric`` client commands present to the controller:
a token (``X-Auth-Token``) and the CA that signed the controller's TLS certificate.

A token is never taken from the command line, where ``ps`` shows it: from
``--token-file FILE`` (or ``L3FABRIC_TOKEN_FILE``) or the environment
(``L3FABRIC_TOKEN``, else ``OS_TOKEN`` as the openstack CLI's). The CA comes
from ``--ca FILE`` (or ``L3FABRIC_CA``, else ``OS_CACERT``).
"""

from __future__ import annotations

import argparse
import os
import ssl
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import httpx

TOKEN_ENV = "L3FABRIC_TOKEN"
TOKEN_FILE_ENV = "L3FABRIC_TOKEN_FILE"
CA_ENV = "L3FABRIC_CA"


class CredentialsError(Exception):
    """The token file or CA cannot be used; the message says which and why."""


def read_token(path: str | Path) -> str:
    """The token in ``path``: its first non-blank, non-comment line."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsError(f"cannot read the token file {path}: {exc}") from None
    for line in lines:
        token = line.split("#", 1)[0].strip()
        if token:
            return token
    raise CredentialsError(f"the token file {path} holds no token")


class TokenFileAuth(httpx.Auth):
    """Sends the token of a file; after a 401 re-reads the file once and retries,
    so a rotated token (new file, then SIGHUP to the server) needs no agent restart."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.token = read_token(path)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["X-Auth-Token"] = self.token
        response = yield request
        if response.status_code == 401:
            try:
                fresh = read_token(self.path)
            except CredentialsError:
                return
            if fresh != self.token:
                self.token = fresh
                request.headers["X-Auth-Token"] = fresh
                yield request


class StaticToken(httpx.Auth):
    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["X-Auth-Token"] = self.token
        yield request


@dataclass(frozen=True)
class Credentials:
    """Where the token and the CA come from (all None: no token, system CAs)."""

    token_file: str | None = None
    token: str | None = None
    ca: str | None = None

    @classmethod
    def from_env(cls) -> Credentials:
        env = os.environ
        return cls(
            token_file=env.get(TOKEN_FILE_ENV) or None,
            token=env.get(TOKEN_ENV) or env.get("OS_TOKEN") or None,
            ca=env.get(CA_ENV) or env.get("OS_CACERT") or None,
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Credentials:
        """``--token-file``/``--ca`` (``add_arguments``) over the environment."""
        env = cls.from_env()
        return cls(
            token_file=getattr(args, "token_file", None) or env.token_file,
            token=env.token,
            ca=getattr(args, "ca", None) or env.ca,
        )

    def auth(self) -> httpx.Auth | None:
        if self.token_file:
            return TokenFileAuth(self.token_file)
        return StaticToken(self.token) if self.token else None

    def verify(self) -> ssl.SSLContext | bool:
        if not self.ca:
            return True
        try:
            return ssl.create_default_context(cafile=self.ca)
        except (OSError, ssl.SSLError) as exc:
            raise CredentialsError(f"cannot use the CA file {self.ca}: {exc}") from None

    def client_options(self) -> dict[str, object]:
        """``auth`` and ``verify`` for an httpx client."""
        return {"auth": self.auth(), "verify": self.verify()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--token-file`` and ``--ca`` for a command that calls the controller."""
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"send the token in FILE as X-Auth-Token (or ${TOKEN_FILE_ENV}, ${TOKEN_ENV})",
    )
    parser.add_argument(
        "--ca",
        metavar="FILE",
        help=f"verify the controller's TLS certificate with this CA (or ${CA_ENV})",
    )


def apply_arguments(args: argparse.Namespace) -> None:
    """Make ``--token-file``/``--ca`` the process's credentials (every client it
    makes, in any thread, then uses them) and check they can be read now."""
    creds = Credentials.from_args(args)
    creds.client_options()  # raises now, not in a thread later
    if creds.token_file:
        os.environ[TOKEN_FILE_ENV] = creds.token_file
    if creds.ca:
        os.environ[CA_ENV] = creds.ca
