"""The script a lab VM's DHCP client runs (``dhclient -sf``, ``udhcpc -s``).

It applies a lease with ``ip`` inside the VM's namespace: the address with
its subnet mask, the MTU, the classless static routes (option 121: the
169.254.1.1/32 on-link route, host routes, the default) or else the router;
IPv6 (``dhclient -6``): the /128. DNS servers go to ``$L3F_RESOLV`` (the
VM's ``/etc/netns/NS/resolv.conf``) and the lease's facts to
``$L3F_LEASE_INFO`` (JSON, for the lab's checks); with those unset it
writes no file at all: never the machine's own ``/etc/resolv.conf``. It
never sets the hostname (the UTS namespace is the machine's).

Only the standard library: it runs once per client event.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

V4_UP = {"BOUND", "RENEW", "REBIND", "REBOOT", "bound", "renew"}
V6_UP = {"BOUND6", "RENEW6", "REBIND6", "REBOOT6"}
V4_DOWN = {"EXPIRE", "FAIL", "RELEASE", "STOP", "deconfig", "nak", "leasefail"}
V6_DOWN = {"EXPIRE6", "RELEASE6", "STOP6"}
PREINIT = {"PREINIT", "PREINIT6", "deconfig"}


def rfc3442_routes(text: str) -> list[tuple[str, str]]:
    """dhclient's option 121 (``"32 169 254 1 1 0 0 0 0 0 169 254 1 1"``) as (dest, gateway)."""
    octets = [int(x) for x in text.replace(",", " ").split()]
    routes: list[tuple[str, str]] = []
    i = 0
    while i < len(octets):
        plen = octets[i]
        width = (plen + 7) // 8
        dest = octets[i + 1 : i + 1 + width] + [0] * (4 - width)
        gateway = octets[i + 1 + width : i + 5 + width]
        if len(gateway) != 4 or plen > 32:
            raise ValueError(f"bad classless static routes: {text!r}")
        routes.append((f"{'.'.join(map(str, dest))}/{plen}", ".".join(map(str, gateway))))
        i += 5 + width
    return routes


def udhcpc_routes(text: str) -> list[tuple[str, str]]:
    """udhcpc's ``staticroutes`` (``"169.254.1.1/32 0.0.0.0 0.0.0.0/0 169.254.1.1"``)."""
    words = text.split()
    return list(zip(words[0::2], words[1::2], strict=True))


def lease_v4(env: Mapping[str, str]) -> dict[str, object] | None:
    """The IPv4 lease in ``env`` (dhclient's or udhcpc's variables); None if there is none."""
    if "new_ip_address" in env:  # dhclient
        mask = env.get("new_subnet_mask", "255.255.255.255")
        classless = env.get("new_rfc3442_classless_static_routes", "")
        routes = rfc3442_routes(classless) if classless else []
        routers = env.get("new_routers", "").split()
        servers = env.get("new_domain_name_servers", "").split()
        address, mtu, name = env["new_ip_address"], env.get("new_interface_mtu"), "new_host_name"
    elif "ip" in env:  # udhcpc
        mask = env.get("subnet") or env.get("mask", "32")
        routes = udhcpc_routes(env.get("staticroutes", ""))
        routers = env.get("router", "").split()
        servers = env.get("dns", "").split()
        address, mtu, name = env["ip"], env.get("mtu"), "hostname"
    else:
        return None
    if not routes and routers:
        routes = [(f"{routers[0]}/32", "0.0.0.0"), ("0.0.0.0/0", routers[0])]
    plen = ipaddress.ip_network(f"0.0.0.0/{mask}").prefixlen
    return {
        "address": f"{ipaddress.ip_address(address)}/{plen}",
        "routes": routes,
        "dns": servers,
        "mtu": int(mtu) if mtu else None,
        "hostname": env.get(name),
    }


def v4_commands(dev: str, lease: Mapping[str, object]) -> list[str]:
    """``ip -batch`` lines applying ``lease`` on ``dev`` (routes in the order given: on-link first)."""
    cmds = [f"addr replace {lease['address']} dev {dev}"]
    if lease["mtu"]:
        cmds.append(f"link set {dev} mtu {lease['mtu']}")
    for dest, gateway in lease["routes"]:  # type: ignore[attr-defined]
        if gateway == "0.0.0.0":
            cmds.append(f"route replace {dest} dev {dev} scope link")
        else:
            cmds.append(f"route replace {dest} via {gateway} dev {dev}")
    return cmds


def _run(lines: list[str]) -> None:
    """One ``ip -batch`` for all of them (one process: the VM waits for this hook)."""
    subprocess.run(
        ["ip", "-force", "-batch", "-"],
        input="".join(f"{line}\n" for line in lines),
        text=True,
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _write_facts(env: Mapping[str, str], family: str, facts: Mapping[str, object]) -> None:
    """The lease's facts into ``$L3F_LEASE_INFO``, its DNS servers (both families'
    leases together: dhclient -4 and -6 run side by side) into ``$L3F_RESOLV``."""
    info = env.get("L3F_LEASE_INFO")
    with contextlib.ExitStack() as stack:
        known: dict[str, Any] = {}
        if info:
            # One writer at a time: the -4 and -6 clients' hooks may run together.
            lock = stack.enter_context(open(f"{info}.lock", "w"))
            fcntl.flock(lock, fcntl.LOCK_EX)
            with contextlib.suppress(OSError, ValueError), open(info) as f:
                known = json.load(f)
        known[family] = facts
        if info:
            with open(f"{info}.tmp", "w") as f:
                json.dump(known, f)
            os.replace(f"{info}.tmp", info)
        _write_resolv(env, known)


def _write_resolv(env: Mapping[str, str], known: Mapping[str, Any]) -> None:
    resolv = env.get("L3F_RESOLV")
    servers = [s for fam in ("ipv4", "ipv6") for s in (known.get(fam) or {}).get("dns") or []]
    if resolv and servers:
        with open(resolv, "w") as f:  # in place: it is bind-mounted over /etc/resolv.conf
            f.write("".join(f"nameserver {s}\n" for s in dict.fromkeys(servers)))


def main(argv: list[str], env: Mapping[str, str]) -> int:
    reason = env.get("reason") or (argv[1] if len(argv) > 1 else "")
    dev = env.get("interface", "")
    if not dev:
        return 1
    lines = [f"link set {dev} up"] if reason in PREINIT else []
    facts: tuple[str, Mapping[str, object]] | None = None
    if reason in V4_DOWN:
        lines.append(f"addr flush dev {dev} to 0.0.0.0/0")
    elif reason in V4_UP:
        lease = lease_v4(env)
        if lease is None:
            return 1
        old = env.get("old_ip_address")
        if old and old != env.get("new_ip_address"):
            lines.append(f"addr flush dev {dev} to 0.0.0.0/0")
        lines += v4_commands(dev, lease)
        facts = ("ipv4", lease)
    elif reason in V6_UP:
        address = f"{env['new_ip6_address']}/{env.get('new_ip6_prefixlen', '128')}"
        old = env.get("old_ip6_address")
        if old and old != env["new_ip6_address"]:
            lines.append(f"addr del {old}/{env.get('old_ip6_prefixlen', '128')} dev {dev}")
        lines.append(f"addr replace {address} dev {dev} nodad")
        facts = ("ipv6", {"address": address, "dns": env.get("new_dhcp6_name_servers", "").split()})
    elif reason in V6_DOWN and env.get("old_ip6_address"):
        lines.append(
            f"addr del {env['old_ip6_address']}/{env.get('old_ip6_prefixlen', '128')} dev {dev}"
        )
    if lines:
        _run(lines)
    if facts:
        _write_facts(env, *facts)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv, os.environ))
