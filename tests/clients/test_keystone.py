"""``--auth keystone`` against a real Keystone: users of two projects drive
l3fabric with the ``openstack`` CLI (password auth, the network endpoint from
the catalog); auth_token validates every token with Keystone."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import openstack
import pytest

from l3fabric.api.app import create_app
from l3fabric.auth.keystone import KeystoneAuth
from l3fabric.nova.events import NovaNotifier
from l3fabric.nova.target import nova_target
from l3fabric.store.sqlite import SqliteStore
from tests.clients.conftest import OPENSTACK
from tests.clients.keystone_server import REGION, Keystone, running_keystone
from tests.clients.server import running_server
from tests.unit.nova_receiver import NovaReceiver

pytestmark = pytest.mark.clients

_AUTHTOKEN = """\
[keystone_authtoken]
www_authenticate_uri = {url}
auth_url = {url}
auth_type = password
username = neutron
password = {password}
project_name = service
user_domain_name = Default
project_domain_name = Default
service_token_roles_required = true
"""


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OS_")}


def _openstack(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(OPENSTACK), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@dataclass(frozen=True)
class User:
    """A Keystone user with the member role on its own project, as the CLI sees it."""

    name: str
    password: str
    project_id: str
    keystone: Keystone

    def env(self) -> dict[str, str]:
        return _clean_env() | {
            "OS_AUTH_URL": self.keystone.url,
            "OS_IDENTITY_API_VERSION": "3",
            "OS_USERNAME": self.name,
            "OS_PASSWORD": self.password,
            "OS_PROJECT_NAME": self.name + "-project",
            "OS_USER_DOMAIN_NAME": "Default",
            "OS_PROJECT_DOMAIN_NAME": "Default",
            "OS_REGION_NAME": REGION,
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _openstack(self.env(), *args)

    def json(self, *args: str) -> dict | list:
        done = self.run(*args, "-f", "json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def token(self) -> str:
        conn = openstack.connect(
            auth_url=self.keystone.url,
            username=self.name,
            password=self.password,
            project_name=self.name + "-project",
            user_domain_name="Default",
            project_domain_name="Default",
        )
        return conn.auth_token


@dataclass(frozen=True)
class Cloud:
    neutron_url: str
    alice: User
    bob: User


def _admin(keystone: Keystone) -> openstack.connection.Connection:
    return openstack.connect(
        auth_url=keystone.url,
        username="admin",
        password=keystone.admin_password,
        project_name="admin",
        user_domain_name="Default",
        project_domain_name="Default",
    )


def _member(admin: openstack.connection.Connection, name: str, keystone: Keystone) -> User:
    identity = admin.identity
    project = identity.create_project(name=name + "-project", domain_id="default")
    password = secrets.token_urlsafe(12)
    user = identity.create_user(name=name, password=password, domain_id="default")
    identity.assign_project_role_to_user(project, user, identity.find_role("member"))
    return User(name, password, project.id, keystone)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    workdir = tmp_path_factory.mktemp("keystone")
    with running_keystone(workdir) as keystone:
        admin = _admin(keystone)
        identity = admin.identity
        # auth_token's own service user, which validates the users' tokens.
        service = identity.create_project(name="service", domain_id="default")
        password = secrets.token_urlsafe(12)
        neutron = identity.create_user(name="neutron", password=password, domain_id="default")
        identity.assign_project_role_to_user(service, neutron, identity.find_role("service"))
        config = workdir / "l3fabric-keystone.conf"
        config.write_text(_AUTHTOKEN.format(url=keystone.url, password=password))

        store = SqliteStore(workdir / "l3fabric.db")
        app = create_app(store, authenticator=KeystoneAuth(config))
        with running_server(app) as url:
            network = identity.create_service(name="neutron", type="network")
            identity.create_endpoint(
                service_id=network.id, interface="public", url=url, region_id=REGION
            )
            yield Cloud(url, _member(admin, "alice", keystone), _member(admin, "bob", keystone))
        store.close()


def test_users_of_two_projects_through_the_catalog(cloud: Cloud) -> None:
    # Each network belongs to the Keystone project of the user who made it.
    # The two users at once: each CLI call is a 3-5 s process.
    with ThreadPoolExecutor(2) as pool:
        users = (cloud.alice, cloud.bob)
        nets = pool.map(lambda u: u.json("network", "create", u.name + "-net"), users)
        made = {u.name: net for u, net in zip(users, nets, strict=True)}
    assert made["alice"]["project_id"] == cloud.alice.project_id
    assert made["bob"]["project_id"] == cloud.bob.project_id
    listed = cloud.alice.json("network", "list", "--long")
    mine = [n for n in listed if n["ID"] == made["alice"]["id"]]
    assert [n["Project"] for n in mine] == [cloud.alice.project_id]
    # Project isolation (Neutron's default policy): bob's network is not alice's to see.
    assert made["bob"]["id"] not in {n["ID"] for n in listed}


def test_a_bad_token_is_refused_with_neutron_body(cloud: Cloud) -> None:
    bad = _openstack(
        _clean_env(), "--os-auth-type", "admin_token", "--os-endpoint", cloud.neutron_url,
        "--os-token", "not-a-keystone-token", "network", "list",
    )  # fmt: skip
    assert bad.returncode != 0
    assert "Authentication required" in bad.stderr

    for headers in ({}, {"X-Auth-Token": "not-a-keystone-token"}):
        refused = httpx.post(
            f"{cloud.neutron_url}/v2.0/networks",
            json={"network": {"name": "sneaky"}},
            headers={**headers, "X-Project-Id": cloud.bob.project_id},
        )
        assert refused.status_code == 401
        assert refused.json()["NeutronError"]["type"] == "HTTPUnauthorized"
    # Nothing of the refused requests was processed.
    token = cloud.bob.token()
    names = [
        n["name"]
        for n in httpx.get(
            f"{cloud.neutron_url}/v2.0/networks", headers={"X-Auth-Token": token}
        ).json()["networks"]
    ]
    assert "sneaky" not in names
    # The version document stays public: clients read it before they authenticate.
    assert httpx.get(cloud.neutron_url + "/").status_code == 200


def test_the_token_not_a_header_names_the_project(cloud: Cloud) -> None:
    created = httpx.post(
        f"{cloud.neutron_url}/v2.0/networks",
        json={"network": {"name": "spoof"}},
        headers={"X-Auth-Token": cloud.alice.token(), "X-Project-Id": cloud.bob.project_id},
    )
    assert created.status_code == 201, created.text
    assert created.json()["network"]["project_id"] == cloud.alice.project_id


def test_nova_events_authenticate_with_keystone_and_find_nova_in_the_catalog(
    cloud: Cloud, tmp_path
) -> None:
    """``server --nova-config``: keystoneauth1 gets a token for the [nova]
    user and the compute endpoint from the catalog; Nova gets a valid token."""
    user = cloud.alice
    with NovaReceiver() as nova:
        identity = _admin(user.keystone).identity
        compute = identity.create_service(name="nova", type="compute")
        identity.create_endpoint(
            service_id=compute.id, interface="internal", url=nova.url, region_id=REGION
        )
        ini = tmp_path / "nova.ini"
        ini.write_text(
            f"[nova]\nauth_url = {user.keystone.url}\nusername = {user.name}\n"
            f"password = {user.password}\nproject_name = {user.name}-project\n"
            f"region_name = {REGION}\n"
        )
        target = nova_target(None, None, str(ini))
        assert target is not None
        notifier = NovaNotifier(target)
        port = {"id": "p1", "device_id": "vm-1", "device_owner": "compute:nova"}
        try:
            notifier.port_status({**port, "status": "ACTIVE"})
            assert [e["tag"] for e in nova.wait_for(1, timeout=30)] == ["p1"]
        finally:
            notifier.close()
    (token,) = nova.tokens
    assert token
    checked = httpx.get(
        f"{user.keystone.url}/auth/tokens",
        headers={"X-Auth-Token": token, "X-Subject-Token": token},
    )
    assert checked.status_code == 200, checked.text
