"""The host's DHCP server: one dnsmasq per host agent, run and configured by it.

``DhcpServer.converge(config)`` (a ``dhcp_config.DhcpConfig``) makes the
host serve it: the interface ``l3f-dhcp`` holding the server's addresses
(169.254.1.1/32, and an IPv6 subnet address, without prefix routes), the
files in the agent's run dir, and dnsmasq itself. A new port's hosts line
is one file in dnsmasq's hosts directory (``dhcp-hostsdir``), which dnsmasq
reads by itself (inotify: ~0.4 ms of its CPU at 10,000 hosts); any other
hosts or options change is a rewrite of the two files, the directory
emptied, and a SIGHUP (dnsmasq re-reads every host: ~43 ms of CPU at
10,000, no restart). A full pass folds the directory back into the hosts
file the same way. Only a change of the subnets served restarts dnsmasq.
With no port to serve, no dnsmasq runs. The agent stops it on exit.

``l3f-dhcp`` is one end of a veth pair (its peer ``l3f-dhcp-p``): the
``dummy`` kind needs a kernel module that containers may lack. Neither end
carries traffic: dnsmasq receives on the taps (``bridge-interface``) and
reads the server addresses from ``l3f-dhcp``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from l3fabric.agent.dhcp_config import HOSTS_DIR, INTERFACE, DhcpConfig, render_main
from l3fabric.pids import alive

log = logging.getLogger(__name__)

PEER = INTERFACE + "-p"
DNSMASQ = "dnsmasq"
START_TIMEOUT_S = 5.0
# A hosts-directory file is named by its port id (a UUID from the API).
_FILE_NAME = re.compile(r"^[0-9A-Za-z][0-9A-Za-z-]{0,63}$")


class DhcpError(Exception):
    """dnsmasq could not be started or configured."""


class DhcpUnavailable(DhcpError):
    """dnsmasq is not installed: retrying would not help."""


class DhcpServer:
    """dnsmasq in the current network namespace, its files in ``run_dir``."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.conf_path = self.run_dir / "dnsmasq.conf"
        self.hosts_path = self.run_dir / "dhcp-hosts"
        self.hosts_dir = self.run_dir / HOSTS_DIR
        self.opts_path = self.run_dir / "dhcp-opts"
        self.pid_path = self.run_dir / "dnsmasq.pid"
        self._applied: DhcpConfig | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.reloads = 0  # SIGHUPs sent (tests: port changes reach dnsmasq without a restart)
        self.starts = 0
        self.files = 0  # hosts lines written to the hosts directory (new ports)

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    def converge(self, config: DhcpConfig, full: bool = True) -> bool:
        """Serve ``config``; True if anything changed. Raises DhcpError.

        ``full``: also re-read the interface (drift) and fold the hosts
        directory back into the hosts file; else a config already served by a
        running dnsmasq costs nothing, one with new ports only (``config.base``
        is the served one) is a file per port in the hosts directory, and one
        whose interface addresses are those already served is a rewrite of the
        files and a SIGHUP (no netlink request; pyroute2's were 10-40 ms).
        """
        if config.empty:
            if self.pid() is None and self._applied is None:
                return False
            self.stop()
            return True
        running = self.pid()
        old = self._applied if running else None
        if old == config and not full:
            return False
        if old is not None and not full and config.base and config.base == old.serial:
            return self._add_hosts(config)
        if shutil.which(DNSMASQ) is None:
            raise DhcpUnavailable("dnsmasq is not installed (Debian: dnsmasq-base)")
        same_interface = old is not None and old.addresses == config.addresses
        changed = False if same_interface and not full else _ensure_interface(config.addresses)
        if old == config and self._folded():
            return changed
        self.run_dir.mkdir(parents=True, exist_ok=True)
        _write(self.hosts_path, config.hosts)
        _write(self.opts_path, config.opts)
        self._empty_hosts_dir()  # every line is in the hosts file now
        if old is not None and old.main == config.main and old.addresses == config.addresses:
            os.kill(running, signal.SIGHUP)  # type: ignore[arg-type]
            self.reloads += 1
        else:
            self._restart(render_main(config.main, str(self.run_dir)))
        self._applied = config
        return True

    def _add_hosts(self, config: DhcpConfig) -> bool:
        """``config`` is the applied one with ``config.added`` lines more: a file each."""
        self.hosts_dir.mkdir(parents=True, exist_ok=True)
        for port_id, line in config.added:
            if not _FILE_NAME.match(port_id):
                raise DhcpError(f"port id {port_id!r} is not a file name")
            # Written beside, then moved in: dnsmasq reads a file when it is
            # moved into the directory, never half of one.
            tmp = self.run_dir / f".{HOSTS_DIR}.tmp"
            tmp.write_text(line)
            tmp.replace(self.hosts_dir / port_id)
            self.files += 1
        self._applied = config
        return True

    def _folded(self) -> bool:
        """Whether the hosts directory is empty (its lines are all in the hosts file)."""
        try:
            return not any(self.hosts_dir.iterdir())
        except FileNotFoundError:
            return True

    def _empty_hosts_dir(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            for path in self.hosts_dir.iterdir():
                path.unlink(missing_ok=True)

    def _restart(self, text: str) -> None:
        self.stop()
        _write(self.conf_path, text)
        proc = subprocess.run(
            [DNSMASQ, f"--conf-file={self.conf_path}"],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
        if proc.returncode != 0:
            raise DhcpError(f"dnsmasq failed: {(proc.stderr or proc.stdout).strip()}")
        # dnsmasq forks; its pid file appears when the daemon is ready.
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.pid() is None:
            if time.monotonic() > deadline:
                raise DhcpError("dnsmasq did not write its pid file")
            time.sleep(0.01)
        self.starts += 1
        log.info("dnsmasq started (pid %s, %s)", self.pid(), self.conf_path)

    def stop(self) -> None:
        """Stop dnsmasq (if it runs) and forget what it served."""
        pid = self.pid()
        self._applied = None
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        with contextlib.suppress(ProcessLookupError):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.pid_path.unlink(missing_ok=True)


def _write(path: Path, text: str) -> None:
    # Atomically: dnsmasq may read the file (a SIGHUP) while we write it.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _ensure_interface(addresses: tuple[str, ...]) -> bool:
    """``l3f-dhcp`` up with exactly ``addresses`` (no prefix routes); True if changed.

    A netlink failure is a DhcpError.
    """
    # pyroute2 costs ~0.3 s to import: the agent's start-up does without it.
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        return _ensure_interface_netlink(addresses)
    except NetlinkError as exc:
        raise DhcpError(f"{INTERFACE}: {exc}") from exc


def _ensure_interface_netlink(addresses: tuple[str, ...]) -> bool:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    changed = False
    with IPRoute() as ipr:
        if _link(ipr, INTERFACE) is None:
            ipr.link("add", ifname=INTERFACE, kind="veth", peer=PEER)
            changed = True
        index = 0
        for name in (INTERFACE, PEER):
            link = _link(ipr, name)
            if link is None:
                raise DhcpError(f"{name} is missing (its veth peer was deleted?)")
            if name == INTERFACE:
                index = link["index"]
            if not link["flags"] & 1:  # IFF_UP
                ipr.link("set", index=link["index"], state="up")
                changed = True
        have = {
            f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
            for a in ipr.get_addr(index=index)
            if a["scope"] == 0  # global: not the link-local
        }
        for text in set(addresses) - have:
            address, plen = text.split("/")
            # IFA_F_NOPREFIXROUTE (0x200) | IFA_F_NODAD (0x02): no subnet route
            # on the host (its VMs are /32 routes), no DAD delay.
            with contextlib.suppress(NetlinkError):
                ipr.addr("add", index=index, address=address, prefixlen=int(plen), flags=0x202)
                changed = True
        for text in have - set(addresses):
            address, plen = text.split("/")
            with contextlib.suppress(NetlinkError):
                ipr.addr("del", index=index, address=address, prefixlen=int(plen))
                changed = True
    return changed


def _link(ipr: Any, name: str) -> Any:
    """The link named ``name`` (one request, not a dump of 10,000 taps); None if absent."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        return ipr.link("get", ifname=name)[0]
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise
