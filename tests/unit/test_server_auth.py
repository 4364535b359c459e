"""``l3fabric server --auth tokens`` and ``--tls-*`` as a process: SIGHUP reloads the
token file (a bad one keeps the old credentials), HTTPS with a CA made here."""

from __future__ import annotations

import datetime
import ipaddress
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from l3fabric.auth.base import NoAuth
from l3fabric.auth.tokens import TokenAuth
from l3fabric.client import ApiError, FabricClient
from l3fabric.credentials import Credentials
from l3fabric.loopback import free_port
from l3fabric.server import Listen, warn_if_open

from .test_server_process import ServerFactory, server_command, start_server  # noqa: F401

OLD = "old-admin-token-0123456789"
NEW = "new-admin-token-0123456789"

Start = Callable[..., tuple[subprocess.Popen, str]]


@pytest.fixture
def start(start_server: ServerFactory) -> Start:  # noqa: F811
    """A server whose readiness is the open version document (no token needed)."""

    def run(*extra: str, **kw: object) -> tuple[subprocess.Popen, str]:
        return start_server("s.db", *extra, ready="/", **kw)

    return run


def status(url: str, token: str, **kw: object) -> int:
    return httpx.get(f"{url}/v1/fabric", headers={"X-Auth-Token": token}, **kw).status_code  # type: ignore[arg-type]


def wait_status(url: str, token: str, want: int) -> None:
    deadline = time.monotonic() + 10
    while status(url, token) != want:
        assert time.monotonic() < deadline, f"{token}: never {want}"
        time.sleep(0.05)


def test_sighup_reloads_tokens_and_keeps_them_when_the_new_file_is_bad(
    start: Start, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{OLD} admin admin\n")
    proc, url = start("--auth", "tokens", "--token-file", str(tokens))
    assert status(url, OLD) == 200
    assert status(url, NEW) == 401
    tokens.write_text(f"{NEW} admin admin\n")
    proc.send_signal(signal.SIGHUP)
    wait_status(url, NEW, 200)
    assert status(url, OLD) == 401
    tokens.write_text(f"{OLD} admin admin\nbroken line\n")
    proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert proc.poll() is None
    assert status(url, NEW) == 200  # the bad file changed nothing
    assert status(url, OLD) == 401
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert "line 2: expected TOKEN PROJECT_ID ROLES" in out
    assert NEW not in out and OLD not in out  # tokens never reach the log


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--auth", "tokens"], "--auth tokens needs --token-file"),
        (["--auth", "tokens", "--token-file", "/nonexistent"], "cannot read the token file"),
        (["--tls-cert", "/nonexistent"], "--tls-cert and --tls-key go together"),
        (["--tls-cert", "/nonexistent", "--tls-key", "/x"], "cannot use the TLS certificate"),
    ],
)
def test_bad_auth_options_are_clear_errors(extra: list[str], words: str, tmp_path: Path) -> None:
    args = ["--store", f"sqlite:///{tmp_path / 's.db'}", "--listen", f"127.0.0.1:{free_port()}"]
    done = subprocess.run(
        server_command(*args, *extra), capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 2
    assert words in done.stderr
    assert "Traceback" not in done.stderr


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    ca: bool,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    else:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 it signed, and an unrelated CA."""
    ca_key, other_key, key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _cert("l3fabric test CA", ca_key, None, ca_key, ca=True)
    other = _cert("another CA", other_key, None, other_key, ca=True)
    cert = _cert("controller", key, ca, ca_key, ca=False)
    raw = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        raw, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {
        "ca": _pem(tmp_path / "ca.pem", ca.public_bytes(raw)),
        "other": _pem(tmp_path / "other.pem", other.public_bytes(raw)),
        "cert": _pem(tmp_path / "cert.pem", cert.public_bytes(raw)),
        "key": _pem(tmp_path / "key.pem", key_pem),
    }


def test_tls_with_tokens_and_a_test_ca(start: Start, tmp_path: Path, tls_files) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{OLD} admin admin\n")
    token_file = tmp_path / "agent-token"
    token_file.write_text(f"{OLD}\n")
    _, url = start(
        "--auth",
        "tokens",
        "--token-file",
        str(tokens),
        "--tls-cert",
        tls_files["cert"],
        "--tls-key",
        tls_files["key"],
        scheme="https",
        verify=False,
    )
    good = Credentials(token_file=str(token_file), ca=tls_files["ca"])
    with FabricClient(url, credentials=good) as client:
        assert client.get_fabric()["heartbeat_interval_s"] > 0
    with FabricClient(url, credentials=Credentials(ca=tls_files["ca"])) as client:
        with pytest.raises(ApiError) as refused:
            client.get_fabric()
        assert refused.value.status == 401
    # A certificate the given CA did not sign is refused before any token is sent.
    stranger = Credentials(token_file=str(token_file), ca=tls_files["other"])
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{url}/v1/fabric", verify=stranger.verify())
    # Plain HTTP to the TLS port gets nothing useful.
    with pytest.raises(httpx.HTTPError):
        httpx.get(url.replace("https:", "http:") + "/v1/fabric", headers={"X-Auth-Token": OLD})


def test_auth_none_warns_when_listening_beyond_loopback(caplog) -> None:
    loopback = [Listen("127.0.0.1", 9696), Listen("::1", 9696)]
    assert not warn_if_open(NoAuth(), loopback)
    assert not warn_if_open(TokenAuth.__new__(TokenAuth), [Listen("10.0.0.1", 9696)])
    assert warn_if_open(NoAuth(), [*loopback, Listen("10.255.0.1", 9696, "l3f-x-mgmt")])
    assert "--auth none: anyone who reaches http://10.255.0.1:9696 in netns" in caplog.text
