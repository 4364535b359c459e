"""The host's DHCP server: one dnsmasq per host agent, run and configured by it.

``DhcpServer`` is the applier of the pass's DHCP ops (agent/ops.py; what
to serve is decided by ``dhcp_config.desired_dhcp`` and the order by
``plan.plan``) and reads what dnsmasq serves for full passes (``observe``):
the interface ``l3f-dhcp`` holding the server's addresses (169.254.1.1/32,
and an IPv6 subnet address, without prefix routes), the files in the
agent's run dir, and dnsmasq itself. A new port's hosts line is one file in
dnsmasq's hosts directory (``dhcp-hostsdir``), which dnsmasq reads by
itself (inotify: ~0.4 ms of its CPU at 10,000 hosts); any other hosts or
options change is a rewrite of the two files, the directory emptied, and a
SIGHUP (dnsmasq re-reads every host: ~43 ms of CPU at 10,000, no restart).
A full pass folds the directory back into the hosts file the same way once
it holds ``FOLD_AT`` lines (fewer are served as they are: a restarted agent
finding them served changes nothing). Only
a change of the subnets served restarts dnsmasq. With no port to serve, no
dnsmasq runs. Like BIRD, dnsmasq outlives the agent: a restarted agent
that finds it serving what it should changes nothing.

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

from l3fabric.agent.dhcp_config import HOSTS_DIR, INTERFACE, ServedDhcp, hosts_text, render_main
from l3fabric.agent.ops import OK, DhcpHostsAdd, DhcpInterface, DhcpServe, DhcpStop, Op, Outcome
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
    """dnsmasq in the current network namespace, its files in ``run_dir``.

    The applier of the plan's DHCP ops (agent/ops.py) and their observer
    (``observe``): what to serve is decided by ``dhcp_config.desired_dhcp``
    and ``plan.plan``, never here.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.conf_path = self.run_dir / "dnsmasq.conf"
        self.hosts_path = self.run_dir / "dhcp-hosts"
        self.hosts_dir = self.run_dir / HOSTS_DIR
        self.opts_path = self.run_dir / "dhcp-opts"
        self.pid_path = self.run_dir / "dnsmasq.pid"
        self.reloads = 0  # SIGHUPs sent (tests: port changes reach dnsmasq without a restart)
        self.starts = 0
        self.files = 0  # hosts lines written to the hosts directory (new ports)
        self._unavailable = False  # dnsmasq missing: logged once

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    def observe(self) -> ServedDhcp:
        """What dnsmasq serves now, from its files, its pid and ``l3f-dhcp`` (a full pass)."""
        if self.pid() is None:
            return ServedDhcp()
        header = render_main("", str(self.run_dir))
        conf = _read(self.conf_path)
        return ServedDhcp(
            running=True,
            main=conf[len(header) :] if conf.startswith(header) else None,
            opts=_read(self.opts_path),
            addresses=_interface_addresses(),
            hosts=_read(self.hosts_path),
            pending=self._pending(),
        )

    def apply(self, op: Op) -> Outcome:
        """Carry out one DHCP op. Raises DhcpError (or OSError) if it failed."""
        try:
            if isinstance(op, DhcpInterface):
                _ensure_interface(op.addresses)
            elif isinstance(op, DhcpServe):
                self._serve(op)
            elif isinstance(op, DhcpHostsAdd):
                self._add_hosts(op.entries)
            else:
                assert isinstance(op, DhcpStop)
                self.stop()
        except DhcpUnavailable as exc:
            # Not a failure to retry every second: logged once (full passes try again).
            if not self._unavailable:
                log.error("DHCP: %s", exc)
            self._unavailable = True
        return OK

    def _serve(self, op: DhcpServe) -> None:
        """Rewrite the files (the hosts directory emptied: its lines are in them), then reload."""
        running = None if op.restart else self.pid()
        if running is None and shutil.which(DNSMASQ) is None:
            raise DhcpUnavailable("dnsmasq is not installed (Debian: dnsmasq-base)")
        # The hosts directory exists before dnsmasq starts: dnsmasq watches
        # it (inotify) only if it is there then, and never sees files added
        # to one made later.
        self.hosts_dir.mkdir(parents=True, exist_ok=True)
        _write(self.hosts_path, hosts_text(op.lines))
        _write(self.opts_path, op.opts)
        self._empty_hosts_dir()
        if running is None:
            self._restart(render_main(op.main, str(self.run_dir)))
        else:
            os.kill(running, signal.SIGHUP)  # dnsmasq re-reads hosts and opts
            self.reloads += 1

    def _add_hosts(self, entries: tuple[tuple[str, str], ...]) -> None:
        """A file per new port in the hosts directory, which dnsmasq reads by itself."""
        self.hosts_dir.mkdir(parents=True, exist_ok=True)
        for port_id, line in entries:
            if not _FILE_NAME.match(port_id):
                raise DhcpError(f"port id {port_id!r} is not a file name")
            # Written beside, then moved in: dnsmasq reads a file when it is
            # moved into the directory, never half of one.
            tmp = self.run_dir / f".{HOSTS_DIR}.tmp"
            tmp.write_text(line)
            tmp.replace(self.hosts_dir / port_id)
            self.files += 1

    def _pending(self) -> dict[str, str]:
        """The hosts directory's lines by port id (those not in the hosts file yet)."""
        try:
            return {path.name: _read(path) for path in self.hosts_dir.iterdir()}
        except FileNotFoundError:
            return {}

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
        """Stop dnsmasq (if it runs)."""
        pid = self.pid()
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


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


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
        have = _addresses(ipr, index)
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


def _interface_addresses() -> tuple[str, ...] | None:
    """The global addresses on ``l3f-dhcp``, sorted; None if it or its peer is missing or down."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        with IPRoute() as ipr:
            links = [_link(ipr, name) for name in (INTERFACE, PEER)]
            if any(link is None or not link["flags"] & 1 for link in links):
                return None
            return tuple(sorted(_addresses(ipr, links[0]["index"])))
    except NetlinkError as exc:
        raise DhcpError(f"{INTERFACE}: {exc}") from exc


def _addresses(ipr: Any, index: int) -> set[str]:
    return {
        f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
        for a in ipr.get_addr(index=index)
        if a["scope"] == 0  # global: not the link-local
    }


def _link(ipr: Any, name: str) -> Any:
    """The link named ``name`` (one request, not a dump of 10,000 taps); None if absent."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        return ipr.link("get", ifname=name)[0]
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise
