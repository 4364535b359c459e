"""``add_one_s`` of ``l3fabric bench routes``: one more port, from its tap's plug to the peer's route.

A single add of a few milliseconds is dominated by noise (a heartbeat, a
BIRD scan, another process on the same two cores), so ``samples`` (5) ports
are added one after another and the medians are reported. Each sample:

1. the port is created through the API; the bench waits (untimed) until the
   agent has recorded the pass that took the creation (security-group
   chain, guard elements, DHCP) and then ``SETTLE_S``: a hypervisor plugs a
   VM after its port is bound, and the creation's own work is not the plug's
   (it is reported as ``add_one_create_pass_s``);
2. the plug, in process: a veth pair is created in one netlink request (the
   tap in the host's namespace, its VM end in the VMs' namespace) and both
   ends are set up. ``add_one_s`` starts right before the creation request;
3. it ends when the peer's kernel has the port's /32 from BIRD: a netlink
   socket subscribed to the peer's IPv4 route notifications (opened before
   the plug) is read as they come, so the detection costs no polling and its
   latency is a wake-up (microseconds), not a poll interval. A FIB lookup
   every ``CHECK_S`` covers a lost notification;
4. untimed: the agent's pass that added the route is read from
   ``passes.json`` (per-step times, CPU time), then the bench waits until the
   controller shows the port ACTIVE (the agent's status report) and
   ``SETTLE_S`` again, so the next sample starts on a quiet host.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import select
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l3fabric.client import FabricClient
from l3fabric.dataplane import netns as netns_mod
from l3fabric.dataplane.links import tap_name
from l3fabric.dataplane.netlink import NLMSGHDR, RTATTR, RTMSG, message
from l3fabric.dataplane.netlink_batch import (
    NLM_F_REQUEST,
    RTA_DST,
    RTM_GETROUTE,
    RTM_NEWROUTE,
    RouteSocket,
)

RTPROT_BIRD = 12
RTMGRP_IPV4_ROUTE = 0x40
# After the agent took a creation (or a status): time for its heartbeat, the
# controller's echo and dnsmasq's reload before the next plug.
SETTLE_S = 0.3
# How long to wait for the agent's pass of a creation before plugging anyway.
CREATE_PASS_WAIT_S = 5.0
# A FIB lookup this often while waiting for the route's notification.
CHECK_S = 0.05
POLL_S = 0.01

Sample = dict[str, float]

# RTM_GETROUTE for one IPv4 /32 with RTM_F_FIB_MATCH: the FIB entry itself.
_GET4 = message(NLMSGHDR, RTMSG, RTATTR, "4s")
RTM_F_FIB_MATCH = 0x2000


def has_route(sock: RouteSocket, prefix: str, protocol: int) -> bool:
    """Whether ``sock``'s namespace has a /32 route for ``prefix`` from ``protocol``.

    One lookup, whatever the table holds (a count of 10,000 routes takes ~10 ms).
    """
    dst = ipaddress.IPv4Network(prefix).network_address.packed
    request = _GET4.pack(
        _GET4.size, RTM_GETROUTE, NLM_F_REQUEST, 0, 0,
        socket.AF_INET, 32, 0, 0, 0, 0, 0, 0, RTM_F_FIB_MATCH,
        8, RTA_DST, dst,
    )  # fmt: skip
    try:
        reply = sock.request(request, RTM_NEWROUTE)
    except OSError:
        return False  # no route at all (ENETUNREACH)
    # rtmsg after the 16-byte header: family, dst_len, src_len, tos, table, protocol.
    return reply[17] == 32 and reply[21] == protocol


def new_routes(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(destination, prefix length, protocol) of each RTM_NEWROUTE in a notification."""
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, _, _, _ = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size:
            return
        if kind == RTM_NEWROUTE and length >= NLMSGHDR.size + RTMSG.size:
            _, dst_len, _, _, _, protocol, _, _, _ = RTMSG.unpack_from(data, offset + NLMSGHDR.size)
            attr, end = offset + NLMSGHDR.size + RTMSG.size, offset + length
            while attr + RTATTR.size <= end:
                attr_len, attr_type = RTATTR.unpack_from(data, attr)
                if attr_len < RTATTR.size:
                    break
                if attr_type == RTA_DST:
                    yield bytes(data[attr + RTATTR.size : attr + attr_len]), dst_len, protocol
                    break
                attr += (attr_len + 3) & ~3
        offset += (length + 3) & ~3


class RouteMonitor:
    """The IPv4 route notifications of namespace ``netns``, and a FIB lookup beside them."""

    def __init__(self, netns: str, lookup: RouteSocket) -> None:
        with netns_mod.entered(netns):
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._sock.bind((0, RTMGRP_IPV4_ROUTE))
        self._sock.setblocking(False)
        self._lookup = lookup

    def close(self) -> None:
        self._sock.close()

    def drain(self) -> None:
        """Forget what is queued (before a plug: only what follows it counts)."""
        with contextlib.suppress(BlockingIOError, OSError):
            while self._sock.recv(1 << 16):
                pass

    def wait(self, prefix: str, deadline: float, check: Callable[[], None]) -> float:
        """When (perf_counter) the namespace got BIRD's route to ``prefix``."""
        dst = ipaddress.IPv4Network(prefix).network_address.packed
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        while True:
            if poller.poll(CHECK_S * 1000):
                now = time.perf_counter()
                if self._arrived(dst):
                    return now
            elif has_route(self._lookup, prefix, RTPROT_BIRD):
                return time.perf_counter()  # a notification lost (ENOBUFS): found by lookup
            check()
            if time.perf_counter() > deadline:
                raise TimeoutError(f"peer kernel: no route to {prefix} when the time was up")

    def _arrived(self, dst: bytes) -> bool:
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                return False
            except OSError:  # ENOBUFS: notifications lost; the lookup decides
                return has_route(self._lookup, f"{ipaddress.IPv4Address(dst)}/32", RTPROT_BIRD)
            if any(d == dst and n == 32 and p == RTPROT_BIRD for d, n, p in new_routes(data)):
                return True


class Plug:
    """Plugs taps into the host's namespace as a hypervisor does: a veth, both ends up."""

    def __init__(self, host_ns: str, vms_ns: str) -> None:
        from pyroute2 import IPRoute  # ~0.3 s to import: only where used

        self.vms_ns = vms_ns
        with netns_mod.entered(host_ns):
            self._host = IPRoute()
        with netns_mod.entered(vms_ns):
            self._vms = IPRoute()

    def close(self) -> None:
        self._host.close()
        self._vms.close()

    def __call__(self, tap: str, vm_end: str) -> tuple[float, float]:
        """Plug ``tap``: (perf_counter, wall clock) right before the creation request."""
        plugged, plugged_at = time.perf_counter(), time.time()
        self._host.link(
            "add", ifname=tap, kind="veth", peer={"ifname": vm_end, "net_ns_fd": self.vms_ns}
        )
        self._host.link("set", index=self._host.link_lookup(ifname=tap)[0], state="up")
        self._vms.link("set", index=self._vms.link_lookup(ifname=vm_end)[0], state="up")
        return plugged, plugged_at


def passes(run_dir: Path) -> list[dict[str, Any]]:
    """The agent's recent passes that did something, as it wrote them (``passes.json``)."""
    try:
        return list(json.loads((run_dir / "passes.json").read_text())["passes"])
    except (OSError, ValueError, KeyError):
        return []


@dataclass
class AddOne:
    """Everything one host's samples need."""

    client: FabricClient
    network_id: str
    host: str
    run_dir: Path
    plug: Plug
    monitor: RouteMonitor
    deadline: float
    check: Callable[[], None]

    def sample(self, n: int) -> Sample:
        """One port added and plugged; its times (keys without the ``add_one_`` prefix)."""
        body = {"network_id": self.network_id, "binding:host_id": self.host, "device_owner": "compute:bench"}  # fmt: skip
        created_at = time.time()
        port = self.client.request("POST", "/v2.0/ports", json={"port": body})["port"]
        created = self._pass_after(created_at, CREATE_PASS_WAIT_S)
        time.sleep(SETTLE_S)
        before = max((p["number"] for p in passes(self.run_dir)), default=0)
        prefix = f"{port['fixed_ips'][0]['ip_address']}/32"
        self.monitor.drain()
        plugged, plugged_at = self.plug(tap_name(port["id"]), f"l3fbvx{n:05d}")
        add_one = self.monitor.wait(prefix, self.deadline, self.check) - plugged
        found = self._route_pass(before)
        result = {"s": add_one, **_pass_keys(found, plugged_at, add_one, passes(self.run_dir))}
        if created is not None:
            result["create_pass_s"] = created["seconds"]
        self._wait_active(port["id"])
        time.sleep(SETTLE_S)
        return result

    def _pass_after(self, wall: float, wait: float) -> dict[str, Any] | None:
        """The first recorded pass that began after ``wall`` (None: none within ``wait`` s)."""
        until = time.perf_counter() + wait
        while time.perf_counter() < until:
            found = [p for p in passes(self.run_dir) if p["started_at"] >= wall]
            if found:
                return found[0]
            self.check()
            time.sleep(POLL_S)
        return None

    def _route_pass(self, after: int) -> dict[str, Any]:
        """The pass after number ``after`` that changed routes (it records itself last)."""
        while True:
            found = [
                p for p in passes(self.run_dir) if p["number"] > after and p["steps"].get("routes")
            ]
            if found:
                return found[0]
            self.check()
            if time.perf_counter() > self.deadline:
                raise TimeoutError(f"no pass recorded in {self.run_dir / 'passes.json'}")
            time.sleep(POLL_S)

    def _wait_active(self, port_id: str) -> None:
        while self.client.request("GET", f"/v2.0/ports/{port_id}")["port"]["status"] != "ACTIVE":
            self.check()
            if time.perf_counter() > self.deadline:
                raise TimeoutError(f"port {port_id} not ACTIVE when the time was up")
            time.sleep(POLL_S)


def _pass_keys(
    added: dict[str, Any], plugged_at: float, add_one: float, recent: list[dict[str, Any]]
) -> Sample:
    """Where one sample's time went, from the agent's pass that added the route."""
    began = added["started_at"] - plugged_at
    # A pass still running at the plug (the periodic full one, at 10,000
    # ~0.5-1.5 s of kernel and nftables reads): what the new port waited for.
    behind = [
        p for p in recent
        if p["number"] < added["number"] and p["started_at"] + p["seconds"] > plugged_at
    ]  # fmt: skip
    keys: Sample = {
        "pass_s": added["seconds"],
        "pass_cpu_s": added.get("cpu_seconds", 0.0),
        "to_pass_s": began,
        "after_pass_s": add_one - began - added["seconds"],
        "behind_full": float(any(p["kind"] == "full" for p in behind)),
        "pass_incremental": float(added["kind"] == "incremental"),
    }
    for step, metrics in added["steps"].items():
        keys[f"{step}_s"] = float(metrics["seconds"])
    return keys


# Per sample, these say whether any sample was so (1) or none (0); the rest are medians.
_ANY = {"behind_full"}
_ALL = {"pass_incremental"}


def summary(samples: list[Sample], prefix: str) -> dict[str, float | int]:
    """The samples' medians as ``<prefix>_<key>`` (``<prefix>_s`` is ``add_one_s``'s own)."""
    keys = sorted({k for s in samples for k in s})
    out: dict[str, float | int] = {}
    for key in keys:
        values = [s.get(key, 0.0) for s in samples]
        if key in _ANY:
            out[f"{prefix}_{key}"] = int(max(values))
        elif key in _ALL:
            out[f"{prefix}_{key}"] = int(min(values))
        else:
            out[f"{prefix}_{key}"] = round(statistics.median(values), 4)
    times = [s["s"] for s in samples]
    out[f"{prefix}_min_s"] = round(min(times), 4)
    out[f"{prefix}_max_s"] = round(max(times), 4)
    out[f"{prefix}_samples"] = len(samples)
    return out
