"""The lab runs the secure path: ``--auth tokens`` with one admin token for the
lab's own calls (the demo, ``lab`` commands, tests) and one credential per host
and gateway agent (``host:NAME``, ``gateway:NAME``), all made at ``lab up``.

Files (mode 0600) in the lab's state directory: ``tokens`` (the server's
token file), ``admin.token``, and ``agents/NODE/token`` for each agent.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from l3fabric.client import FabricClient
from l3fabric.credentials import Credentials, read_token
from l3fabric.lab.plan import Plan
from l3fabric.lab.state import LabState

# The project of the lab's admin and agents.
LAB_PROJECT = "admin"
# Nodes whose agent gets its own credential (role ROLE:NAME).
AGENT_ROLES = ("host", "gateway")


def token_file(state: LabState) -> Path:
    """The server's token file."""
    return state.dir / "tokens"


def admin_token_file(state: LabState) -> Path:
    return state.dir / "admin.token"


def agent_token_file(state: LabState, node: str) -> Path:
    return state.agent_dir(node) / "token"


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def write_credentials(state: LabState, plan: Plan) -> None:
    """A fresh admin token and one token per host and gateway agent."""
    admin = secrets.token_urlsafe(32)
    lines = [f"{admin} {LAB_PROJECT} admin"]
    _write_secret(admin_token_file(state), f"{admin}\n")
    for node in plan.by_role(*AGENT_ROLES):
        token = secrets.token_urlsafe(32)
        lines.append(f"{token} {LAB_PROJECT} {node.role}:{node.name}")
        _write_secret(agent_token_file(state, node.name), f"{token}\n")
    _write_secret(token_file(state), "\n".join(lines) + "\n")


def admin_credentials(lab: str) -> Credentials:
    """The lab's admin token (none for a lab made without one)."""
    path = admin_token_file(LabState(lab))
    return Credentials(token_file=str(path)) if path.exists() else Credentials()


def admin_token(lab: str) -> str | None:
    path = admin_token_file(LabState(lab))
    return read_token(path) if path.exists() else None


def lab_client(plan: Plan, timeout: float = 10.0) -> FabricClient:
    """A client of the lab's controllers (the first that answers) with the lab's admin token."""
    return FabricClient(plan.api_urls(), timeout=timeout, credentials=admin_credentials(plan.lab))
