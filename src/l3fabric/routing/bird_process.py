"""A BIRD instance: its files, its process, and applying a new configuration.

Each instance has a directory (default /run/l3fabric/<instance>/) with
bird.conf, bird.ctl (control socket) and bird.pid. BIRD daemonises, so it
outlives the agent that started it: an agent restart adopts the running BIRD
(by its pid file) and BGP sessions stay up. New configurations are written
atomically, checked by the running BIRD, and applied with ``configure``, never
a restart; an unchanged configuration is not applied at all.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from l3fabric.dataplane import netns as netns_mod
from l3fabric.routing.bird_control import BirdControl, BirdError

RUN_DIR = "/run/l3fabric"
_INSTANCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# The CPU priority agents start BIRD with: ahead of the agent's own bookkeeping
# (status reports, the watch, its next pass) and of other work on the node.
# Measured with 10,000 endpoint routes on 2 cores: BIRD alone has them at the
# peer ~1 s after the kernel; beside the agent and controller, 1.1-1.9 s
# (docs/benchmarks.md, branch perf2).
ROUTING_NICE = -5


# What BIRD's own unit may use: a socket per BGP session (1,000 in a mesh of
# 1,000 hosts, or on a gateway peering with 1,000 hosts), with room to spare.
UNIT_LIMIT_NOFILE = 8192
BIRD_CAPABILITIES = ("CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW")


def unit_name(unit: str) -> str:
    """``unit`` if it is a name we start BIRD's unit under; ValueError if not."""
    if not _INSTANCE.match(unit) or unit.endswith("."):
        raise ValueError(f"bad unit name {unit!r}: use letters, digits, '_.-'")
    return unit


def systemd_unit_argv(unit: str, netns: str | None, nice: int, bird: list[str]) -> list[str]:
    """``systemd-run`` starting ``bird`` (in the foreground) as transient unit ``unit``.

    BIRD then has a unit of its own: the agent's unit may kill its whole
    control group (stop, restart, upgrade) without touching BIRD, BGP sessions
    and BFD stay up across an agent restart, the agent adopts BIRD again by
    its pid file, and BIRD's log (syslog, its default) lands in the journal,
    which rotates it. ``--collect``: the name is free again once BIRD exits.
    """
    argv = ["systemd-run", f"--unit={unit_name(unit)}", "--collect", "--quiet"]
    argv += [f"--property=LimitNOFILE={UNIT_LIMIT_NOFILE}", f"--property=SyslogIdentifier={unit}"]
    # Kernel routes, BGP's port 179 and BFD's sockets: nothing else.
    argv.append(f"--property=CapabilityBoundingSet={' '.join(BIRD_CAPABILITIES)}")
    if nice:
        argv.append(f"--property=Nice={nice}")
    if netns is not None:
        argv.append(f"--property=NetworkNamespacePath={netns_mod.path(netns)}")
    return [*argv, "--", *bird]


class BirdConfigError(BirdError):
    """BIRD refused a configuration; the running one is untouched."""


class BirdProcess:
    """BIRD instance ``instance`` in namespace ``netns`` (None: the current one)."""

    def __init__(
        self, instance: str, netns: str | None = None, run_dir: str = RUN_DIR, nice: int = 0
    ) -> None:
        if not _INSTANCE.match(instance):
            raise ValueError(f"bad BIRD instance name {instance!r}")
        self.instance = instance
        self.netns = netns
        self.dir = Path(run_dir) / instance
        self.config_path = self.dir / "bird.conf"
        self.socket_path = self.dir / "bird.ctl"
        self.pid_path = self.dir / "bird.pid"
        self.control = BirdControl(str(self.socket_path))
        if not -20 <= nice <= 19:
            raise ValueError(f"bad nice value {nice}: expected -20 to 19")
        self.nice = nice  # the CPU priority BIRD is started with (see ROUTING_NICE)
        # None: BIRD daemonises from the agent (and stays in its cgroup). A name:
        # BIRD runs as that transient systemd unit of its own, in the
        # foreground, its log in the journal (``l3fabric agent --bird-unit``).
        self.unit: str | None = None

    def pid(self) -> int | None:
        """The pid of our running BIRD, or None."""
        try:
            pid = int(self.pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        # A recycled pid, or a zombie, is not our BIRD.
        if state == "Z" or str(self.socket_path).encode() not in cmdline:
            return None
        return pid

    def alive(self) -> bool:
        return self.pid() is not None

    def check(self, text: str) -> None:
        """Parse ``text`` with ``bird -p`` (no running BIRD needed); BirdConfigError if wrong."""
        self.dir.mkdir(parents=True, exist_ok=True)
        candidate = self.dir / "bird.conf.check"
        _write_atomic(candidate, text)
        try:
            done = subprocess.run(
                ["bird", "-p", "-c", str(candidate)], capture_output=True, text=True, timeout=30
            )
        finally:
            candidate.unlink(missing_ok=True)
        if done.returncode != 0:
            raise BirdConfigError("bird -p", 9001, (done.stderr or done.stdout).strip())

    def start(self, text: str, timeout_s: float = 10.0) -> bool:
        """Start BIRD with config ``text`` unless it runs already; True if started.

        A running instance is adopted and given ``text`` through ``apply``.
        """
        if self.alive():
            self.apply(text)
            return False
        self.check(text)
        _write_atomic(self.config_path, text)
        self.socket_path.unlink(missing_ok=True)
        done = subprocess.run(self.start_argv(), capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise BirdConfigError("start", 8002, (done.stderr or done.stdout).strip())
        self.control.wait_ready(timeout_s)
        return True

    def start_argv(self) -> list[str]:
        """The command that starts this BIRD (see ``unit``)."""
        bird = ["bird", "-c", str(self.config_path), "-s", str(self.socket_path)]
        bird += ["-P", str(self.pid_path)]
        if self.unit is not None:
            return systemd_unit_argv(self.unit, self.netns, self.nice, [*bird, "-f"])
        if self.nice:
            # Without the privilege nice warns and runs BIRD at the usual priority.
            bird = ["nice", "-n", str(self.nice), *bird]
        return netns_mod.command(self.netns, bird)

    def apply(self, text: str) -> bool:
        """Make ``text`` the running configuration; False if it already is.

        The candidate is checked by the running BIRD first; on an error the
        file and the running configuration stay as they were.
        """
        try:
            if self.config_path.read_text() == text:
                return False
        except FileNotFoundError:
            pass
        candidate = self.dir / "bird.conf.new"
        _write_atomic(candidate, text)
        try:
            self.control.configure_check(str(candidate))
        except BirdError as exc:
            candidate.unlink(missing_ok=True)
            raise BirdConfigError(exc.command, exc.code, exc.message) from None
        os.replace(candidate, self.config_path)
        self.control.configure(str(self.config_path))
        return True

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if BIRD is still there after ``timeout_s``."""
        for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 2.0)):
            pid = self.pid()
            if pid is None:
                break
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while self.pid() is not None and time.monotonic() < deadline:
                time.sleep(0.02)
        if self.pid() is not None:
            raise TimeoutError(f"bird {self.instance} did not die")
        self.socket_path.unlink(missing_ok=True)
        self.pid_path.unlink(missing_ok=True)
