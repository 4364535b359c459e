"""``--auth keystone`` without Keystone: configuration errors are clear, and an
identity service that cannot answer is a Neutron 503, not a 401 or a 500.
(The real Keystone is in tests/clients/test_keystone.py.)"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import pytest

from l3fabric.api.app import create_app
from l3fabric.auth.base import AuthUnavailable
from l3fabric.auth.keystone import KeystoneAuth, KeystoneConfigError
from l3fabric.loopback import free_port
from l3fabric.service.common import Context
from l3fabric.store.sqlite import SqliteStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


class Down:
    """An authenticator whose identity service does not answer."""

    blocking = True

    def authenticate(self, headers: Mapping[str, str]) -> Context | None:
        raise AuthUnavailable("The identity service (Keystone) is unavailable.")

    def reload(self) -> None:
        pass


def test_an_unavailable_identity_service_is_a_neutron_503(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    with TestClient(create_app(store, authenticator=Down())) as client:
        before = store.revision()
        answer = client.post("/v2.0/networks", json={"network": {"name": "n"}})
    assert answer.status_code == 503
    assert answer.json()["NeutronError"]["type"] == "ServiceUnavailable"
    assert store.revision() == before  # nothing was written
    store.close()


def test_a_keystone_config_that_does_not_load_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeystoneConfigError, match="is not a file"):
        KeystoneAuth(tmp_path / "missing.conf")
    broken = tmp_path / "broken.conf"
    broken.write_text("[keystone_authtoken\nno section end\n")
    with pytest.raises(KeystoneConfigError, match=str(broken)):
        KeystoneAuth(broken)


def test_keystone_down_is_unavailable_and_no_token_is_nobody(tmp_path: Path) -> None:
    # The real auth_token, pointed at a port where no Keystone listens.
    url = f"http://127.0.0.1:{free_port()}/v3"
    config = tmp_path / "keystone.conf"
    config.write_text(
        "[keystone_authtoken]\n"
        f"www_authenticate_uri = {url}\nauth_url = {url}\nauth_type = password\n"
        "username = neutron\npassword = secret\nproject_name = service\n"
        "user_domain_name = Default\nproject_domain_name = Default\n"
        "http_request_max_retries = 0\n"
    )
    auth = KeystoneAuth(config)
    assert auth.authenticate({}) is None
    assert auth.authenticate({"x-project-id": "p1", "x-roles": "admin"}) is None
    with pytest.raises(AuthUnavailable):
        auth.authenticate({"x-auth-token": "some-token"})
