"""``lab boot --dhcp``: a VM that asks DHCP for its addresses, as a cloud image does.

The client runs inside the VM's namespace and must never write this
machine's own files. ``ip netns exec NS`` bind-mounts each file of
``/etc/netns/NS/`` over ``/etc``: the VM gets its own empty
``/etc/netns/NS/resolv.conf`` (removed again by ``lab delete`` and ``lab
down``); every other file the client touches is named on its command line,
in the lab's state directory (``dhcp/VM/``): dhclient's config, leases, pid
files and hook (``-cf``/``-lf``/``-pf``/``-sf``), udhcpc's pid file and hook
(``-p``/``-s``). The hook is ``l3fabric.lab.dhcp_hook``: it applies the lease
with ``ip`` and writes DNS servers only to the VM's resolv.conf.

IPv4 is asked by the chosen client (dhclient or udhcpc); an interface with
an address on a ``dhcpv6-stateful`` subnet also runs ``dhclient -6`` (the
default route comes from the host's router advertisement).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from l3fabric.lab import dhcp_hook
from l3fabric.lab.errors import LabError

CLIENTS = ("dhclient", "udhcpc")
NETNS_ETC = Path("/etc/netns")
TIMEOUT_S = 10  # per client: a lease, or the boot fails

DHCLIENT_CONF = f"""\
option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
request subnet-mask, routers, domain-name-servers, host-name, interface-mtu,
        rfc3442-classless-static-routes, dhcp6.name-servers;
timeout {TIMEOUT_S};
retry 1;
initial-interval 1;
"""


def netns_etc(namespace: str) -> Path:
    return NETNS_ETC / namespace


def prepare_etc(namespace: str) -> Path:
    """``/etc/netns/NS/resolv.conf`` (empty): what ``ip netns exec`` shows the VM as /etc's."""
    if not namespace.startswith("l3f-"):
        raise LabError(f"not a lab namespace: {namespace}")
    etc = netns_etc(namespace)
    etc.mkdir(parents=True, exist_ok=True)
    resolv = etc / "resolv.conf"
    resolv.touch()
    return resolv


def remove_etc(namespace: str) -> None:
    if namespace.startswith("l3f-"):
        shutil.rmtree(netns_etc(namespace), ignore_errors=True)


def remove_lab_etc(lab: str) -> None:
    """Every ``/etc/netns/l3f-LAB-*`` (``lab down``, also after a crash)."""
    if NETNS_ETC.is_dir():
        for path in NETNS_ETC.glob(f"l3f-{lab}-*"):
            shutil.rmtree(path, ignore_errors=True)


def _hook(directory: Path) -> Path:
    """An executable that runs ``lab/dhcp_hook.py`` with this interpreter.

    The VM waits for it, so it starts lean: the file itself (standard library
    only) with ``-I -S`` (no site packages to scan). dhclient's PREINIT (the
    interface up) is done already: boot brought the interfaces up.
    """
    hook = directory / "hook"
    script = Path(dhcp_hook.__file__).resolve()
    hook.write_text(
        "#!/bin/sh\n"
        'case "$reason" in PREINIT|PREINIT6) exit 0;; esac\n'
        f'exec {sys.executable} -I -S {script} "$@"\n'
    )
    hook.chmod(0o755)
    return hook


def client_commands(
    client: str, directory: Path, resolv: Path, dev: str, ipv6: bool
) -> list[list[str]]:
    """The commands that get ``dev`` its lease(s), each returning once bound (then daemonised)."""
    if client not in CLIENTS:
        raise LabError(f"--dhcp-client {client!r}: one of {', '.join(CLIENTS)}")
    hook = directory / "hook"
    info = directory / f"{dev}.json"
    env = [f"L3F_RESOLV={resolv}", f"L3F_LEASE_INFO={info}"]
    cmds: list[list[str]] = []
    if client == "dhclient":
        cmds.append(_dhclient(directory, hook, env, dev, "4"))
    else:
        pid = directory / f"{dev}.udhcpc.pid"
        argv = ["udhcpc", "-i", dev, "-s", str(hook), "-p", str(pid), "-n", "-T", "1"]
        argv += ["-t", str(TIMEOUT_S), "-O", "staticroutes", "-O", "mtu", "-O", "hostname"]
        cmds.append(["env", *env, *argv])
    if ipv6:
        cmds.append(_dhclient(directory, hook, env, dev, "6"))
    return cmds


def _dhclient(directory: Path, hook: Path, env: list[str], dev: str, family: str) -> list[str]:
    argv = ["dhclient", f"-{family}", "-1", "-cf", str(directory / "dhclient.conf")]
    argv += ["-lf", str(directory / f"{dev}.v{family}.leases")]
    argv += ["-pf", str(directory / f"{dev}.v{family}.pid"), "-sf", str(hook)]
    for item in env:
        argv += ["-e", item]
    return [*argv, dev]


def stateful_v6(port: dict[str, Any], subnets: dict[str, dict[str, Any]]) -> bool:
    """True if ``port`` has an address on a ``dhcpv6-stateful`` subnet."""
    return any(
        subnets.get(ip.get("subnet_id", ""), {}).get("ipv6_address_mode") == "dhcpv6-stateful"
        for ip in port.get("fixed_ips") or []
    )


def run_clients(
    namespace: str, directory: Path, client: str, interfaces: list[tuple[str, bool]]
) -> None:
    """Run the DHCP clients for ``interfaces`` ((dev, ipv6)) in ``namespace``; LabError if one fails."""
    directory.mkdir(parents=True, exist_ok=True)
    resolv = prepare_etc(namespace)
    _hook(directory)
    (directory / "dhclient.conf").write_text(DHCLIENT_CONF)
    procs = []
    for dev, ipv6 in interfaces:
        for cmd in client_commands(client, directory, resolv, dev, ipv6):
            argv = ["ip", "netns", "exec", namespace, *cmd]
            proc = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
            procs.append((cmd, proc))
    failed = []
    for cmd, proc in procs:
        try:
            _, err = proc.communicate(timeout=TIMEOUT_S + 5)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if proc.returncode != 0:
            failed.append(f"{' '.join(cmd)}: {err.strip()[-300:]}")
    if failed:
        raise LabError("DHCP got no lease: " + "; ".join(failed))
