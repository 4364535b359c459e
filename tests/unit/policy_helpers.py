"""A test-only authenticator: each request's Context from X-Project-Id and
X-Test-Roles (comma-separated), through the app's real authentication path."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from l3fabric.api.app import create_app
from l3fabric.service.common import Context
from l3fabric.store.sqlite import SqliteStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


class TestRoles:
    """Authenticator: the project and roles the test's headers name."""

    __test__ = False  # not a test class
    blocking = False

    def authenticate(self, headers: Mapping[str, str]) -> Context:
        roles = headers.get("x-test-roles", "admin")
        return Context(headers.get("x-project-id", "default"), frozenset(roles.split(",")))

    def reload(self) -> None:
        """Nothing to re-read."""


@contextmanager
def policy_client(tmp_path: Path) -> Iterator[TestClient]:
    store = SqliteStore(tmp_path / "db")
    try:
        with TestClient(create_app(store, authenticator=TestRoles())) as c:
            yield c
    finally:
        store.close()


def as_member(project: str) -> dict[str, str]:
    return {"X-Project-Id": project, "X-Test-Roles": "member"}


def as_admin(project: str = "admin-project") -> dict[str, str]:
    return {"X-Project-Id": project, "X-Test-Roles": "admin,member"}
