"""What the host's DHCP server (dnsmasq) serves: pure functions of the controller's view.

dnsmasq runs with three files (agent/dhcp.py):

- the main config (``render_main``): one ``dhcp-range ... static`` per
  subnet, never a dynamic pool, and the fixed options (no DNS, only the
  taps, unknown MACs ignored). It changes only when the set of subnets
  does, and then dnsmasq is restarted;
- the hosts file: one ``dhcp-host`` line per port bound here (by MAC);
- the options file: per subnet, the routes, DNS servers and MTU.

The hosts and options files change with ports and subnets and reach dnsmasq
with a SIGHUP, which re-reads both without a restart; a new port's line is a
file of its own in dnsmasq's hosts directory, read without one.
``desired_dhcp`` is the DHCP part of the host agent's pure desired state
(agent/plan.py), kept per port so that a pass costs what changed.

Routed design: the tap is not a LAN. The VM's IPv4 next hop is 169.254.1.1
(the host answers ARP for it by proxy ARP), given as classless static routes
(option 121): 169.254.1.1/32 on-link, the subnet's host routes, then the
default via 169.254.1.1; option 3 says the same for clients without 121.
dnsmasq identifies itself as 169.254.1.1 (its interface holds it), so
renewals sent to the server reach the host. For IPv6, the RA (sent by
dnsmasq from the tap's fe80::1) gives the default route; its prefix is
advertised off-link, so every other address is routed through the host.

Every value that reaches the files comes from the API and is checked here
(MACs, addresses, ids, hostnames), so a bad record cannot inject options.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from l3fabric.addresses import is_canonical_address
from l3fabric.agent.identity import changed
from l3fabric.dataplane.links import TAP_PREFIX
from l3fabric.layered import Layered, finished

SERVER_ADDRESS4 = "169.254.1.1"  # the host's next hop for VMs; dnsmasq's server identifier
INTERFACE = "l3f-dhcp"  # the interface dnsmasq's taps are bridged to (its addresses)
HOSTS_DIR = "dhcp-hosts.d"  # in the run dir: new ports' lines, a file each
# A full pass folds the hosts directory back into the hosts file (a SIGHUP)
# once it holds this many lines; fewer are served as they are.
FOLD_AT = 256
LEASE_S = 86400  # Neutron's dhcp_lease_duration default

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_ID = re.compile(r"^[0-9A-Za-z-]{1,64}$")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

# IPv6 address mode -> dnsmasq dhcp-range mode; every prefix off-link (routed).
V6_MODES = {
    "dhcpv6-stateful": "static,off-link",
    "dhcpv6-stateless": "ra-stateless,off-link",
    "slaac": "ra-only,off-link",
}


@dataclass(frozen=True)
class DhcpConfig:
    """dnsmasq's files and the addresses its interface needs."""

    main: str = ""  # the range lines of the main config (restart when they change)
    hosts: str = ""
    opts: str = ""
    addresses: tuple[str, ...] = ()  # on INTERFACE, as "address/plen"
    errors: tuple[str, ...] = field(default=(), compare=False)

    @property
    def empty(self) -> bool:
        return not self.hosts


def subnet_tag(subnet_id: str) -> str:
    return "s" + subnet_id.replace("-", "")


def hostname(port: Mapping[str, Any], address: str) -> str:
    """The port's ``dns_name`` if it is a DNS label, else Neutron's ``host-10-0-0-5``."""
    name = str(port.get("dns_name") or "").lower()
    if _LABEL.match(name):
        return name
    return "host-" + address.replace(".", "-").replace(":", "-").strip("-")


def v6_mode(subnet: Mapping[str, Any]) -> str | None:
    """The dnsmasq mode of an IPv6 subnet, None if it asks for no RA/DHCPv6."""
    mode = subnet.get("ipv6_address_mode") or subnet.get("ipv6_ra_mode")
    return V6_MODES.get(mode) if mode else None


def _served_subnets(view_subnets: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Subnets this server can serve, by id, as (network, subnet)."""
    out: dict[str, Any] = {}
    for sid, subnet in view_subnets.items():
        if not subnet.get("enable_dhcp", True) or not _ID.match(sid):
            continue
        try:
            net = ipaddress.ip_network(subnet["cidr"])
        except (KeyError, ValueError):
            continue
        if net.version == 6 and v6_mode(subnet) is None:
            continue
        out[sid] = (net, subnet)
    return out


def _range_lines(
    sid: str, net: Any, subnet: Mapping[str, Any], errors: list[str]
) -> tuple[list[str], str | None]:
    """The main-config lines of one subnet and the interface address it needs."""
    tag = subnet_tag(sid)
    if net.version == 4:
        return [
            f"shared-network={INTERFACE},{net.network_address}",
            f"dhcp-range=set:{tag},{net.network_address},static,{net.netmask},{LEASE_S}",
        ], None
    # DHCPv6 needs an address of the subnet on the interface (no shared-network
    # for v6): the gateway address, which no VM holds, without a prefix route.
    gateway = subnet.get("gateway_ip")
    if not gateway:
        errors.append(f"subnet {sid}: IPv6 DHCP/RA needs a gateway_ip (the server's address)")
        return [], None
    mode = v6_mode(subnet)
    line = f"dhcp-range=set:{tag},{net.network_address},{mode},{net.prefixlen},{LEASE_S}"
    return [line], f"{ipaddress.ip_address(gateway)}/{net.prefixlen}"


def _option_lines(sid: str, net: Any, subnet: Mapping[str, Any], mtu: int | None) -> list[str]:
    tag = subnet_tag(sid)
    lines: list[str] = []
    servers = [str(ipaddress.ip_address(s)) for s in subnet.get("dns_nameservers") or []]
    servers = [s for s in servers if ipaddress.ip_address(s).version == net.version]
    if net.version == 4:
        routes = [f"{SERVER_ADDRESS4}/32,0.0.0.0"]
        for r in subnet.get("host_routes") or []:
            dest = ipaddress.ip_network(r["destination"])
            hop = ipaddress.ip_address(r["nexthop"])
            if dest.version == 4 and hop.version == 4:
                routes.append(f"{dest},{hop}")
        routes.append(f"0.0.0.0/0,{SERVER_ADDRESS4}")
        lines.append(f"tag:{tag},option:classless-static-route,{','.join(routes)}")
        lines.append(f"tag:{tag},option:router,{SERVER_ADDRESS4}")
        if servers:
            lines.append(f"tag:{tag},option:dns-server,{','.join(servers)}")
        if mtu:
            lines.append(f"tag:{tag},option:mtu,{mtu}")
    elif servers:
        lines.append(f"tag:{tag},option6:dns-server,{','.join(f'[{s}]' for s in servers)}")
    return lines


def _host_line(port: Mapping[str, Any], served: Mapping[str, Any]) -> str | None:
    mac = str(port.get("mac_address", "")).lower()
    if not _MAC.match(mac):
        return None
    v4: str | None = None
    v6: str | None = None
    for ip in port.get("fixed_ips") or []:
        if ip.get("subnet_id") not in served:
            continue
        text = ip["ip_address"]
        if not is_canonical_address(text):
            # What the API stores is canonical: ipaddress (~20 us a port, 0.2 s
            # of a 10,000-port first pass) only for anything else.
            text = str(ipaddress.ip_address(text))
        if ":" not in text and v4 is None:
            v4 = text
        elif ":" in text and v6 is None:
            _, subnet = served[ip["subnet_id"]]
            if v6_mode(subnet) == V6_MODES["dhcpv6-stateful"]:
                v6 = text
    first = v4 or v6
    if first is None and not _has_v6_info(port, served):
        return None
    parts = [mac]
    if v4:
        parts.append(v4)
    if v6:
        parts.append(f"[{v6}]")
    parts.append(hostname(port, first or mac.replace(":", "")))
    parts.append(str(LEASE_S))
    return ",".join(parts)


def _has_v6_info(port: Mapping[str, Any], served: Mapping[str, Any]) -> bool:
    """A port on a stateless/SLAAC subnet: known (for RA/info), without an address."""
    return any(ip.get("subnet_id") in served for ip in port.get("fixed_ips") or [])


# One port's entry: its hosts-file line (None: nothing to serve) and the
# subnets it uses, or the error that kept it out.
_Entry = tuple[str | None, frozenset[str], str | None]


def _port_entry(port: Mapping[str, Any], served: Mapping[str, Any]) -> _Entry:
    try:
        line = _host_line(port, served)
    except (KeyError, ValueError) as exc:
        return None, frozenset(), f"port {port.get('id')}: {exc}"
    used = frozenset(ip.get("subnet_id", "") for ip in port.get("fixed_ips") or [])
    return line, used if line else frozenset(), None


def _same_objects(now: Mapping[str, Any], before: Mapping[str, Any]) -> bool:
    """Whether ``now`` holds the very objects of ``before`` (the watch replaces what changes)."""
    return len(now) == len(before) and all(before.get(k) is v for k, v in now.items())


@dataclass(frozen=True)
class DesiredDhcp:
    """What the host's dnsmasq should serve: the DHCP part of a pass's desired state.

    Per port, so that a pass's plan compares only the ports it touched and a
    new port is one line more, not a new hosts file of 10,000 (agent/plan.py).
    """

    lines: Mapping[str, str] = field(default_factory=dict)  # port id -> its hosts line
    main: str = ""  # the range lines of the main config (restart when they change)
    opts: str = ""
    addresses: tuple[str, ...] = ()  # on INTERFACE, as "address/plen"
    # How it was made, for the next pass's ``previous``: the subnets each
    # port's line uses, ports per used subnet, why a port has no line, the
    # errors of the subnets, and the view's objects it was made from.
    used_by: Mapping[str, frozenset[str]] = field(default_factory=dict)
    used: Mapping[str, int] = field(default_factory=dict)
    invalid: Mapping[str, str] = field(default_factory=dict)
    subnet_errors: tuple[str, ...] = ()
    sources: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    subnets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    networks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # None: computed from every port; else the ports this state recomputed.
    touched: frozenset[str] | None = None

    @property
    def empty(self) -> bool:
        return not self.lines

    @property
    def errors(self) -> tuple[str, ...]:
        """Why ports have no line (by port id), then what is wrong with the subnets."""
        return (*(self.invalid[p] for p in sorted(self.invalid)), *self.subnet_errors)

    def config(self) -> DhcpConfig:
        return DhcpConfig(self.main, hosts_text(self.lines), self.opts, self.addresses, self.errors)


def hosts_text(lines: Mapping[str, str]) -> str:
    """The hosts file of ``lines`` (port id -> line), by port id: O(ports), rewrites only."""
    return "".join(lines[p] for p in sorted(lines))


def desired_dhcp(
    host: str,
    ports: Mapping[str, Mapping[str, Any]],
    subnets: Mapping[str, Mapping[str, Any]],
    networks: Mapping[str, Mapping[str, Any]],
    previous: DesiredDhcp | None = None,
    hint: Collection[str] | None = None,
) -> DesiredDhcp:
    """What dnsmasq serves for the ports bound to ``host`` (admin up) on DHCP-enabled subnets.

    Pure. ``previous`` (the last pass's): only the port objects that are new
    or gone since it are converted (the watch replaces an object on every
    change), unless a subnet changed; ``hint``: the only ports that can have
    changed since ``previous``'s view (None: all, compared by identity). The
    result equals the one computed without ``previous`` (tests/unit).
    """
    served = _served_subnets(subnets)
    if previous is not None and not _same_objects(subnets, previous.subnets):
        previous = None  # a subnet changed: every line may differ
    if previous is None:
        ids: Collection[str] = ports.keys()
        lines: MutableMapping[str, str] = {}
        used_by: MutableMapping[str, frozenset[str]] = {}
        used: MutableMapping[str, int] = {}
        invalid: MutableMapping[str, str] = {}
    else:
        ids = changed(ports, previous.sources, hint)
        lines = Layered.of(previous.lines).edit()
        used_by = Layered.of(previous.used_by).edit()
        used, invalid = dict(previous.used), Layered.of(previous.invalid).edit()
    for port_id in ids:
        invalid.pop(port_id, None)
        if lines.pop(port_id, None) is not None:
            for subnet_id in used_by.pop(port_id):
                left = used[subnet_id] - 1
                if left:
                    used[subnet_id] = left
                else:
                    del used[subnet_id]  # no port uses it any more
        port = ports.get(port_id)
        if port is None or port.get("binding:host_id") != host:
            continue
        if not port.get("admin_state_up", True):
            continue
        line, subnet_ids, error = _port_entry(port, served)
        if error:
            invalid[port_id] = error
        if line:
            lines[port_id] = f"{line}\n"
            used_by[port_id] = subnet_ids
            for subnet_id in subnet_ids:
                used[subnet_id] = used.get(subnet_id, 0) + 1
    if (
        previous is not None
        and previous.used.keys() == used.keys()
        and _same_objects(networks, previous.networks)
    ):
        main, opts, addresses = previous.main, previous.opts, previous.addresses
        subnet_errors = previous.subnet_errors
    else:
        errors: list[str] = []
        config = _assemble(served, set(used), "", networks, errors)
        main, opts, addresses, subnet_errors = config.main, config.opts, config.addresses, tuple(errors)  # fmt: skip
    invalid_done = finished(invalid)
    return DesiredDhcp(
        lines=finished(lines),
        main=main,
        opts=opts,
        addresses=addresses,
        used_by=finished(used_by),
        used=used,
        invalid=invalid_done,
        subnet_errors=subnet_errors,
        sources=ports,
        subnets=subnets,
        networks=networks,
        touched=None if previous is None else frozenset(ids),
    )


def render(
    host: str,
    ports: Mapping[str, Mapping[str, Any]],
    subnets: Mapping[str, Mapping[str, Any]],
    networks: Mapping[str, Mapping[str, Any]],
) -> DhcpConfig:
    """dnsmasq's files for the ports bound to ``host`` (admin up) on DHCP-enabled subnets."""
    return desired_dhcp(host, ports, subnets, networks).config()


@dataclass(frozen=True)
class ServedDhcp:
    """What the host's dnsmasq serves: the DHCP part of ``Observed`` (agent/observed.py)."""

    running: bool = False
    main: str | None = None  # the range lines it was started with (None: not ours)
    opts: str = ""
    addresses: tuple[str, ...] | None = None  # on INTERFACE (None: missing or down)
    # port id -> line, as the last pass left them; None: read from the files (``hosts``).
    lines: Mapping[str, str] | None = None
    hosts: str = ""  # the hosts file as read
    # The hosts directory as read: port id -> line (new ports since the last rewrite).
    pending: Mapping[str, str] = field(default_factory=dict)


def _assemble(
    served: Mapping[str, Any],
    used: set[str],
    hosts: str,
    networks: Mapping[str, Mapping[str, Any]],
    errors: list[str],
) -> DhcpConfig:
    main: list[str] = []
    opts: list[str] = []
    addresses: list[str] = [f"{SERVER_ADDRESS4}/32"]
    for sid in sorted(served.keys() & used):
        net, subnet = served[sid]
        lines, address = _range_lines(sid, net, subnet, errors)
        if not lines:
            continue
        main += lines
        if address:
            addresses.append(address)
        mtu = (networks.get(subnet.get("network_id", "")) or {}).get("mtu")
        try:
            opts += _option_lines(sid, net, subnet, int(mtu) if mtu else None)
        except (KeyError, ValueError) as exc:
            errors.append(f"subnet {sid}: {exc}")
    return DhcpConfig(
        main="".join(f"{line}\n" for line in main),
        hosts=hosts,
        opts="".join(f"{line}\n" for line in opts),
        addresses=tuple(addresses),
        errors=tuple(errors),
    )


def render_main(ranges: str, run_dir: str) -> str:
    """dnsmasq's whole main config: fixed options, then ``ranges`` (``DhcpConfig.main``)."""
    return (
        "# Written by the l3fabric host agent; dnsmasq re-reads hosts and opts on SIGHUP.\n"
        "port=0\n"  # no DNS: only DHCP and RA
        f"interface={INTERFACE}\n"
        f"interface={TAP_PREFIX}*\n"
        # Requests on a tap are served as if on INTERFACE, which holds the addresses.
        f"bridge-interface={INTERFACE},{TAP_PREFIX}*\n"
        "dhcp-ignore=tag:!known\n"
        "dhcp-authoritative\n"
        "enable-ra\n"
        f"ra-param={TAP_PREFIX}*,0,{LEASE_S // 48}\n"
        f"dhcp-leasefile={run_dir}/dnsmasq.leases\n"
        f"dhcp-hostsfile={run_dir}/dhcp-hosts\n"
        # New ports' lines, one file each: dnsmasq reads a new file there by
        # itself (inotify), a SIGHUP re-reads every host (~43 ms of CPU at 10,000).
        f"dhcp-hostsdir={run_dir}/{HOSTS_DIR}\n"
        f"dhcp-optsfile={run_dir}/dhcp-opts\n"
        f"pid-file={run_dir}/dnsmasq.pid\n"
        f"log-facility={run_dir}/dnsmasq.log\n" + ranges
    )
