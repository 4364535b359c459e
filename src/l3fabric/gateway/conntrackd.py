"""conntrackd for a gateway pair: its config, and the one process the gateway agent runs.

The gateways of a pair share NAT state: each runs Debian's ``conntrackd``
(one per gateway, in the gateway's network namespace: conntrack is per
namespace, and conntrackd talks netlink in the one it runs in), syncing over
a dedicated link (the registration's ``sync``: local and peer address, the
interface) in FTFW mode (reliable: acknowledged, resent when lost).

``DisableExternalCache on``: a state received from the peer is injected into
the kernel's table at once instead of waiting in a cache for a failover
commit. So a flow's reply that the fabric or the internet hashes to the
other gateway finds its NAT binding there already (active-active), and a
gateway failure needs no commit step. The kernel's ``tcp_loose`` and
``tcp_be_liberal`` (``CONNTRACK_SYSCTLS``) let a gateway take a flow
mid-stream (window tracking would otherwise drop packets whose sequence
numbers it never saw).

The config and its control socket, lock and log live in the agent's run dir
(``<run dir>/conntrackd/``), so several gateways (a lab) never share a lock.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from l3fabric.dataplane import ifnames
from l3fabric.dataplane import netns as netns_mod

PORT = 3780
# What a gateway of a pair needs besides forwarding: conntrack takes up flows
# mid-stream (synced entries, or none yet) without window checks dropping them.
CONNTRACK_SYSCTLS: dict[str, str] = {
    "net.netfilter.nf_conntrack_tcp_loose": "1",
    "net.netfilter.nf_conntrack_tcp_be_liberal": "1",
}


@dataclass(frozen=True)
class SyncLink:
    """Where this gateway's conntrackd sends and listens: the sync link."""

    interface: str
    local: ipaddress.IPv4Address | ipaddress.IPv6Address
    peer: ipaddress.IPv4Address | ipaddress.IPv6Address

    def __post_init__(self) -> None:
        if not ifnames.ruleset_safe(self.interface):
            raise ValueError(f"bad sync interface name {self.interface!r}")
        if self.local.version != self.peer.version:
            raise ValueError(f"sync local {self.local} and peer {self.peer} differ in family")

    @classmethod
    def from_record(cls, record: dict) -> SyncLink:
        """From the registration's ``sync`` object; ValueError if it is wrong."""
        return cls(
            str(record["interface"]),
            ipaddress.ip_address(record["local"]),
            ipaddress.ip_address(record["peer"]),
        )


def render(link: SyncLink, directory: Path) -> str:
    """conntrackd.conf for ``link``, its files under ``directory``."""
    v = link.local.version
    return f"""# l3fabric gateway state sync (generated; see docs/gateway.md)
Sync {{
\tMode FTFW {{
\t\tDisableExternalCache on
\t\tResendQueueSize 131072
\t}}
\tUDP {{
\t\tIPv{v}_address {link.local}
\t\tIPv{v}_Destination_Address {link.peer}
\t\tPort {PORT}
\t\tInterface {link.interface}
\t\tSndSocketBuffer 1249280
\t\tRcvSocketBuffer 1249280
\t\tChecksum on
\t}}
}}
General {{
\tSystemd off
\tHashSize 32768
\tHashLimit 262144
\tLogFile {directory / "conntrackd.log"}
\tSyslog off
\tLockFile {directory / "conntrackd.lock"}
\tUNIX {{
\t\tPath {directory / "conntrackd.ctl"}
\t}}
\tNetlinkBufferSize 2097152
\tNetlinkBufferSizeMaxGrowth 8388608
\tNetlinkEventsReliable on
\tFilter From Kernelspace {{
\t\tProtocol Accept {{
\t\t\tTCP
\t\t\tUDP
\t\t\tICMP
\t\t}}
\t\tAddress Ignore {{
\t\t\tIPv4_address 127.0.0.1
\t\t\tIPv6_address ::1
\t\t\tIPv{v}_address {link.local}
\t\t\tIPv{v}_address {link.peer}
\t\t}}
\t}}
}}
"""


class Conntrackd:
    """The agent's conntrackd: started with a config, restarted when it changes, stopped.

    ``netns``: the namespace it is started in (None: the current one, the agent's).
    """

    def __init__(self, run_dir: str | Path, netns: str | None = None) -> None:
        self.dir = Path(run_dir) / "conntrackd"
        self.config_path = self.dir / "conntrackd.conf"
        self.netns = netns

    def pid(self) -> int | None:
        """The pid of the conntrackd running our config, or None (found by its command line)."""
        wanted = str(self.config_path).encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if argv and argv[0].endswith(b"conntrackd") and wanted in argv and state != "Z":
                return int(entry)
        return None

    def running_text(self) -> str | None:
        """The config the running conntrackd was started with (None: none runs)."""
        if self.pid() is None:
            return None
        try:
            return self.config_path.read_text()
        except FileNotFoundError:
            return None

    def apply(self, text: str | None) -> bool:
        """Run conntrackd with config ``text`` (None: none); True if anything changed."""
        if text is not None and self.running_text() == text:
            return False
        changed = self.stop()
        if text is None:
            return changed
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "conntrackd.lock").unlink(missing_ok=True)
        (self.dir / "conntrackd.ctl").unlink(missing_ok=True)
        self.config_path.write_text(text)
        done = subprocess.run(
            netns_mod.command(self.netns, ["conntrackd", "-d", "-C", str(self.config_path)]),
            capture_output=True,
            text=True,
            timeout=10,
        )
        if done.returncode != 0:
            raise RuntimeError(f"conntrackd: {(done.stderr or done.stdout).strip()}")
        return True

    def stop(self, timeout_s: float = 5.0) -> bool:
        """SIGTERM (then SIGKILL) our conntrackd; True if one ran."""
        pid = self.pid()
        if pid is None:
            return False
        for sig in (15, 9):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return True
            deadline = time.monotonic() + timeout_s
            while self.pid() is not None and time.monotonic() < deadline:
                time.sleep(0.02)
            if self.pid() is None:
                return True
        return True
