"""What the host's DHCP server (dnsmasq) serves: pure functions of the controller's view.

dnsmasq runs with three files (agent/dhcp.py):

- the main config (``render_main``): one ``dhcp-range ... static`` per
  subnet, never a dynamic pool, and the fixed options (no DNS, only the
  taps, unknown MACs ignored). It changes only when the set of subnets
  does, and then dnsmasq is restarted;
- the hosts file: one ``dhcp-host`` line per port bound here (by MAC);
- the options file: per subnet, the routes, DNS servers and MTU.

The hosts and options files change with ports and subnets and reach dnsmasq
with a SIGHUP, which re-reads both without a restart.

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

import bisect
import dataclasses
import ipaddress
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from l3fabric.addresses import is_canonical_address
from l3fabric.agent.identity import changed
from l3fabric.dataplane.links import TAP_PREFIX

SERVER_ADDRESS4 = "169.254.1.1"  # the host's next hop for VMs; dnsmasq's server identifier
INTERFACE = "l3f-dhcp"  # the interface dnsmasq's taps are bridged to (its addresses)
HOSTS_DIR = "dhcp-hosts.d"  # in the run dir: new ports' lines, a file each
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
    # ``Renderer``'s bookkeeping: this config's number, and, if it is the
    # config numbered ``base`` with only ``added`` hosts lines more (port id,
    # line), that number (else 0): such a change reaches dnsmasq as one file
    # per port in its hosts directory, without re-reading the whole file.
    serial: int = field(default=0, compare=False)
    base: int = field(default=0, compare=False)
    added: tuple[tuple[str, str], ...] = field(default=(), compare=False)

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


class Renderer:
    """``render`` kept up to date by the ports that changed: a pass costs what changed.

    The watch replaces a port object on every change, never edits it, so an
    object seen before (and the same subnets) gives the same line. Only the
    ports whose object is new or gone are converted; the hosts file is joined
    again only when a line changed, and a call that changed nothing returns
    the last config itself (a host with 10,000 ports: ~0.1 ms instead of the
    ~15 ms of converting and sorting them all every pass). ``ports`` is kept
    until the next call, so it must not be edited (the agent passes each
    pass's own copy of the view).
    """

    def __init__(self) -> None:
        self._subnets: tuple[int, ...] = ()
        self._networks: tuple[int, ...] = ()
        self._serial = 0  # the last config's number (never reused, also after a reset)
        self._reset()

    def _reset(self) -> None:
        """Forget every port's line (the next call converts them all)."""
        self._ports: Mapping[str, Mapping[str, Any]] = {}  # the view last rendered
        self._lines: dict[str, str] = {}  # port id -> its hosts-file line
        self._order: list[str] = []  # the keys of _lines, sorted
        self._used_by: dict[str, frozenset[str]] = {}  # port id -> the subnets its line uses
        # subnet id -> ports whose line uses it (a dict: Counter's update and
        # subtract check their argument against an ABC, ~10 us a port)
        self._used: dict[str, int] = {}
        self._errors: dict[str, str] = {}  # port id -> why it has no line
        self._config: DhcpConfig | None = None
        # Since the last config returned: the lines of ports that had none, and
        # whether anything else changed (a line gone or different, the options).
        self._added: list[tuple[str, str]] = []
        self._only_added = False

    def __call__(
        self,
        host: str,
        ports: Mapping[str, Mapping[str, Any]],
        subnets: Mapping[str, Mapping[str, Any]],
        networks: Mapping[str, Mapping[str, Any]],
        hint: Collection[str] | None = None,
    ) -> DhcpConfig:
        """dnsmasq's files for the ports bound to ``host`` (admin up) on DHCP-enabled subnets.

        ``hint``: the only ports that can have changed since the last call
        (None: every port is compared, by identity).
        """
        served = _served_subnets(subnets)
        identity = tuple(id(o) for o in subnets.values())
        if identity != self._subnets:
            self._reset()  # a subnet changed: every line may differ
            self._subnets = identity
        networks_identity = tuple(id(o) for o in networks.values())
        if networks_identity != self._networks:
            self._networks, self._config = networks_identity, None  # the options may differ
        ids = changed(ports, self._ports, hint if self._ports else None)
        self._ports = ports
        last = self._config
        self._added, self._only_added = [], last is not None
        for port_id in ids:
            self._port(host, port_id, ports.get(port_id), served)
        if ids or last is None:
            errors = [self._errors[p] for p in sorted(self._errors)]
            hosts = "".join(map(self._lines.__getitem__, self._order))
            config = _assemble(served, set(self._used), hosts, networks, errors)
            if config == last and config.errors == last.errors:
                return last  # the same files (a status changed, say): the same config
            self._serial += 1
            grown = last is not None and self._only_added and _same_but_hosts(last, config)
            self._config = dataclasses.replace(
                config,
                serial=self._serial,
                base=last.serial if grown and last is not None else 0,
                added=tuple(self._added) if grown else (),
            )
        return self._config

    def _port(
        self, host: str, port_id: str, port: Mapping[str, Any] | None, served: Mapping[str, Any]
    ) -> None:
        """Convert one port again (None: it is gone); note a line added or any other change."""
        before = self._lines.get(port_id)
        self._convert(host, port_id, port, served)
        after = self._lines.get(port_id)
        if after != before:
            if before is None and after is not None:
                self._added.append((port_id, after))
            else:
                self._only_added = False

    def _convert(
        self, host: str, port_id: str, port: Mapping[str, Any] | None, served: Mapping[str, Any]
    ) -> None:
        self._errors.pop(port_id, None)
        line = self._lines.pop(port_id, None)
        if line is not None:
            del self._order[bisect.bisect_left(self._order, port_id)]
            for subnet_id in self._used_by.pop(port_id):
                left = self._used[subnet_id] - 1
                if left:
                    self._used[subnet_id] = left
                else:
                    del self._used[subnet_id]  # no port uses it any more
        if port is None or port.get("binding:host_id") != host:
            return
        if not port.get("admin_state_up", True):
            return
        line, subnet_ids, error = _port_entry(port, served)
        if error:
            self._errors[port_id] = error
        if line:
            self._lines[port_id] = f"{line}\n"
            bisect.insort(self._order, port_id)
            self._used_by[port_id] = subnet_ids
            for subnet_id in subnet_ids:
                self._used[subnet_id] = self._used.get(subnet_id, 0) + 1


def _same_but_hosts(a: DhcpConfig, b: DhcpConfig) -> bool:
    return a.main == b.main and a.opts == b.opts and a.addresses == b.addresses


def render(
    host: str,
    ports: Mapping[str, Mapping[str, Any]],
    subnets: Mapping[str, Mapping[str, Any]],
    networks: Mapping[str, Mapping[str, Any]],
) -> DhcpConfig:
    """dnsmasq's files for the ports bound to ``host`` (admin up) on DHCP-enabled subnets."""
    return Renderer()(host, ports, subnets, networks)


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
