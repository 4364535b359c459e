"""A test-only authenticator: each request's Context from X-Project-Id and
X-Test-Roles, set where real authentication sets it (``request.state.context``)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import FastAPI, Request

from l3fabric.api.app import create_app
from l3fabric.service.common import Context
from l3fabric.store.sqlite import SqliteStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def _with_test_roles(app: FastAPI) -> FastAPI:
    @app.middleware("http")
    async def authenticate(request: Request, call_next):  # type: ignore[no-untyped-def]
        roles = request.headers.get("x-test-roles")
        if roles is not None:
            project = request.headers.get("x-project-id", "default")
            request.state.context = Context(project, frozenset(roles.split(",")))
        return await call_next(request)

    return app


@contextmanager
def policy_client(tmp_path: Path) -> Iterator[TestClient]:
    store = SqliteStore(tmp_path / "db")
    try:
        with TestClient(_with_test_roles(create_app(store))) as c:
            yield c
    finally:
        store.close()


def as_member(project: str) -> dict[str, str]:
    return {"X-Project-Id": project, "X-Test-Roles": "member"}


def as_admin(project: str = "admin-project") -> dict[str, str]:
    return {"X-Project-Id": project, "X-Test-Roles": "admin,member"}
