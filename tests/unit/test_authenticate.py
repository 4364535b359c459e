"""The authentication middleware: who the authenticator says, or a Neutron 401
before the app reads anything (the authenticator here is a stand-in)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.datastructures import Headers

from l3fabric.api.app import create_app
from l3fabric.api.authenticate import Unauthenticated
from l3fabric.api.keystone import KeystoneAuthenticator, KeystoneConfigError
from l3fabric.service import Context
from l3fabric.store.sqlite import SqliteStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


class OneToken:
    """Token ``good`` is a member of project ``p1``; anything else is refused."""

    def authenticate(self, headers: Headers) -> Context:
        if headers.get("x-auth-token") != "good":
            raise Unauthenticated("no", headers={"WWW-Authenticate": 'Keystone uri="x"'})
        return Context("p1", frozenset({"member"}), "u1")


@pytest.fixture
def authed(tmp_path: Path) -> Iterator[TestClient]:
    store = SqliteStore(tmp_path / "db")
    with TestClient(create_app(store, authenticator=OneToken())) as c:
        yield c
    store.close()


def test_the_context_comes_from_the_credential_not_from_headers(authed: TestClient) -> None:
    made = authed.post(
        "/v2.0/networks",
        json={"network": {"name": "n"}},
        headers={"X-Auth-Token": "good", "X-Project-Id": "p2"},
    )
    assert made.status_code == 201
    assert made.json()["network"]["project_id"] == "p1"


@pytest.mark.parametrize("path", ["/v2.0/networks", "/v1/hosts"])
def test_a_refused_request_is_a_neutron_401_and_changes_nothing(
    authed: TestClient, path: str
) -> None:
    for headers in ({}, {"X-Auth-Token": "bad"}):
        refused = authed.post(path, json={"network": {"name": "n"}}, headers=headers)
        assert refused.status_code == 401
        assert refused.json() == {
            "NeutronError": {"type": "Unauthorized", "message": "no", "detail": ""}
        }
        assert refused.headers["www-authenticate"] == 'Keystone uri="x"'
    listed = authed.get("/v2.0/networks", headers={"X-Auth-Token": "good"})
    assert listed.json()["networks"] == []


def test_the_version_document_is_public(authed: TestClient) -> None:
    assert authed.get("/").status_code == 200
    assert authed.get("/v2.0").status_code == 401


def test_a_keystone_config_that_does_not_load_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeystoneConfigError, match="is not a file"):
        KeystoneAuthenticator(tmp_path / "missing.conf")
    broken = tmp_path / "broken.conf"
    broken.write_text("[keystone_authtoken\nno section end\n")
    with pytest.raises(KeystoneConfigError, match=str(broken)):
        KeystoneAuthenticator(broken)
