"""A throwaway etcd cluster on loopback (Debian's /usr/bin/etcd) for the lab, benches and tests.

Each member gets two free loopback ports and a data directory under one
temporary directory named after the cluster; members can be killed (SIGKILL)
and restarted on their data for fault tests. ``close()`` ends every member
and removes the directory.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from l3fabric.child import terminate
from l3fabric.loopback import free_port

ETCD_BINARY = "/usr/bin/etcd"


@dataclass
class Member:
    """One etcd member: its name, loopback ports, data directory and process."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class LocalEtcd:
    """``members`` etcd processes forming one cluster on 127.0.0.1."""

    def __init__(
        self,
        members: int = 1,
        name: str = "l3f-etcd",
        binary: str = ETCD_BINARY,
        election_ms: int = 1000,
        parent: Path | None = None,
    ) -> None:
        """``parent``: where the cluster's directory goes (default: the system's temporary)."""
        self.name = name
        self.binary = binary
        # Loopback: short timeouts, so a killed leader is replaced in about a second.
        self.election_ms = election_ms
        self.dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))
        self.members = [
            Member(f"{name}-{i}", free_port(), free_port(), self.dir / f"m{i}")
            for i in range(members)
        ]

    @property
    def endpoints(self) -> list[str]:
        """``127.0.0.1:PORT`` of every member."""
        return [f"127.0.0.1:{m.client_port}" for m in self.members]

    @property
    def url(self) -> str:
        """The store URL naming every member: ``etcd://127.0.0.1:P1,127.0.0.1:P2``."""
        return "etcd://" + ",".join(self.endpoints)

    def start(self, timeout: float = 20.0) -> LocalEtcd:
        """Start every member and wait until the cluster has a leader."""
        for index in range(len(self.members)):
            self.spawn(index)
        self.wait_healthy(timeout)
        return self

    def spawn(self, index: int) -> None:
        """Start one member (again, on its data) without waiting for it."""
        member = self.members[index]
        cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        # An existing data dir means a restart: etcd then ignores the initial-cluster flags.
        state = "existing" if member.data_dir.exists() else "new"
        log = open(self.dir / f"{member.name}.log", "ab")  # noqa: SIM115 - the child owns it
        member.proc = subprocess.Popen(
            [
                self.binary,
                f"--name={member.name}",
                f"--data-dir={member.data_dir}",
                f"--listen-client-urls={member.client_url}",
                f"--advertise-client-urls={member.client_url}",
                f"--listen-peer-urls={member.peer_url}",
                f"--initial-advertise-peer-urls={member.peer_url}",
                f"--initial-cluster={cluster}",
                f"--initial-cluster-token={self.name}",
                f"--initial-cluster-state={state}",
                f"--heartbeat-interval={max(10, self.election_ms // 10)}",
                f"--election-timeout={self.election_ms}",
                "--logger=zap",
                "--log-level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Wait until every running member reports health (a leader is elected)."""
        deadline = time.monotonic() + timeout
        pending = [m for m in self.members if m.running]
        while pending:
            pending = [m for m in pending if not _healthy(m)]
            if not pending:
                return
            dead = [m.name for m in pending if not m.running]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(
                    f"etcd members not healthy: {[m.name for m in pending]}"
                    f" (exited: {dead}); last log lines: {self._log_tail(pending[0])}"
                )
            time.sleep(0.1)

    def leader(self) -> int:
        """The index of the member that leads the cluster now."""
        running = [m.client_url if m.running else "" for m in self.members]
        found = leader_index(running)
        if found is None:
            raise RuntimeError(f"no etcd member leads; logs in {self.dir}")
        return found

    def _log_tail(self, member: Member, lines: int = 5) -> str:
        log = self.dir / f"{member.name}.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def kill(self, index: int) -> None:
        """SIGKILL one member (its data stays, so ``restart`` brings it back)."""
        member = self.members[index]
        if member.proc is not None:
            member.proc.kill()
            member.proc.wait(timeout=10)
            member.proc = None

    def restart(self, index: int, timeout: float = 20.0) -> None:
        """Start a killed member again on its data directory."""
        self.spawn(index)
        deadline = time.monotonic() + timeout
        while not _healthy(self.members[index]):
            if time.monotonic() > deadline or not self.members[index].running:
                raise RuntimeError(f"{self.members[index].name} did not come back")
            time.sleep(0.1)

    def close(self) -> None:
        """End every member and delete the data."""
        for member in self.members:
            if member.proc is not None:
                terminate(member.proc, timeout=5)
                member.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalEtcd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _healthy(member: Member) -> bool:
    return healthy(member.client_url)


def healthy(client_url: str) -> bool:
    """Whether the etcd member at ``client_url`` reports health (it sees a leader)."""
    try:
        reply = httpx.get(f"{client_url}/health", timeout=1.0)
        return reply.status_code == 200 and reply.json().get("health") == "true"
    except (httpx.HTTPError, ValueError):
        return False


def leader_index(client_urls: list[str]) -> int | None:
    """Which of the members at ``client_urls`` (empty: skip it) leads now, by their status."""
    for index, url in enumerate(client_urls):
        if not url:
            continue
        try:
            status = httpx.post(f"{url}/v3/maintenance/status", json={}, timeout=2)
            status.raise_for_status()
            body = status.json()
        except (httpx.HTTPError, ValueError):
            continue
        if body.get("leader") == body["header"]["member_id"]:
            return index
    return None
