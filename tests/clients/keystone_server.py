"""A real Keystone on loopback for the tests: SQLite, fernet tokens,
``keystone-manage bootstrap``, served by the standard library's WSGI server
from its own venv (``make setup`` builds ``.venv-keystone``). This module must not be named
``keystone``: the server script beside it would import it for the real one."""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from l3fabric.child import terminate
from l3fabric.loopback import free_port

ROOT = Path(__file__).resolve().parents[2]
KEYSTONE_BIN = ROOT / ".venv-keystone" / "bin"
REGION = "RegionOne"
# Keystone's key repositories: receipts have their own, which defaults to /etc/keystone.
_CONF = """\
[database]
connection = sqlite:///{dir}/keystone.db
[token]
provider = fernet
[fernet_tokens]
key_repository = {dir}/fernet-keys
[fernet_receipts]
key_repository = {dir}/fernet-keys
[credential]
key_repository = {dir}/credential-keys
"""


@dataclass(frozen=True)
class Keystone:
    url: str  # the identity v3 endpoint, http://127.0.0.1:PORT/v3
    admin_password: str


def _manage(conf: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(KEYSTONE_BIN / "keystone-manage"), "--config-file", str(conf), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{proc.args!r} failed: {err.decode()[-2000:]}")


def _wait_until_up(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"keystone exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"keystone did not answer on {url}: {log.read_text()[-2000:]}")


@contextmanager
def running_keystone(workdir: Path) -> Iterator[Keystone]:
    """Set up and serve a fresh Keystone in ``workdir``; stopped and gone afterwards."""
    if not (KEYSTONE_BIN / "keystone-manage").exists():
        raise RuntimeError(f"{KEYSTONE_BIN} has no Keystone: run `make setup`")
    conf = workdir / "keystone.conf"
    conf.write_text(_CONF.format(dir=workdir))
    port = free_port()
    url = f"http://127.0.0.1:{port}/v3"
    password = secrets.token_urlsafe(16)
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    owner = ("--keystone-user", user, "--keystone-group", group)
    # The key repositories do not need the database: set all three up at once.
    _wait(
        _manage(conf, "db_sync"),
        _manage(conf, "fernet_setup", *owner),
        _manage(conf, "credential_setup", *owner),
    )
    _wait(
        _manage(
            conf, "bootstrap", "--bootstrap-password", password,
            "--bootstrap-admin-url", url, "--bootstrap-public-url", url,
            "--bootstrap-internal-url", url, "--bootstrap-region-id", REGION,
        )
    )  # fmt: skip
    log = workdir / "keystone.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                str(KEYSTONE_BIN / "python"),
                str(Path(__file__).with_name("keystone_wsgi.py")),
                str(port),
            ],
            env={**os.environ, "OS_KEYSTONE_CONFIG_FILES": str(conf)},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    try:
        _wait_until_up(url, server, log)
        yield Keystone(url, password)
    finally:
        terminate(server)
