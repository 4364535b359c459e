"""systemd readiness (``READY=1`` over ``$NOTIFY_SOCKET``) and ``--log-format json``."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from l3fabric import cli, logs, sdnotify
from l3fabric.loopback import free_port


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(30)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        yield sock


def test_notify_sends_ready(notify_socket) -> None:
    assert sdnotify.notify() is True
    assert notify_socket.recv(64) == b"READY=1"


def test_notify_outside_systemd_is_a_no_op(monkeypatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify() is False


def test_the_server_process_is_ready_once_it_listens(tmp_path: Path, notify_socket) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "l3fabric.cli", "--log-format", "json", "server",
            "--store", f"sqlite:///{tmp_path / 's.db'}", "--listen", f"127.0.0.1:{port}"]  # fmt: skip
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert notify_socket.recv(64) == b"READY=1"
        # Ready means serving: the port answers now, not a moment later.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any("listening on" in line["message"] for line in lines), err
    assert {"time", "level", "logger", "message"} <= set(lines[0])


def test_json_log_lines_carry_the_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("l3fabric.x", logging.ERROR, __file__, 1, "failed %s", ("x",),
                                   sys.exc_info())  # fmt: skip
    entry = json.loads(logs.JsonFormatter().format(record))
    assert entry["message"] == "failed x" and entry["level"] == "ERROR"
    assert "ValueError: boom" in entry["exception"]


def test_log_format_value_is_not_taken_for_a_command() -> None:
    assert cli._command(["--log-format", "json", "status"]) == "status"
    assert cli._command(["-v", "trace", "10.0.0.1"]) == "trace"
