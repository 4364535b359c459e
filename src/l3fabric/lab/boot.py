"""``lab boot`` / ``lab delete``: the lab plays Nova.

Boot creates the VM's ports through the Neutron API, bound to a host, then a
VM namespace with one veth per port: the host end is the tap
(``tap`` + port id[:11], moved into the host's namespace, where the agent
configures it), the VM end is ``eth<i>`` with the port's MAC, configured as
a cloud image would: each address as /32 (/128), a default route via
169.254.1.1 (onlink) on eth0, and with several interfaces, source routing
(one table per interface) so replies leave by the interface they belong to.
Anycast addresses the VM holds (``--anycast``) go on its loopback, as /32
(/128): the VM answers for them; the fabric routes them to it only while the
API says so (a ``/v1/anycast`` group or ``allowed_address_pairs``).

With ``dhcp`` (``lab boot --dhcp``) the interfaces are only brought up: boot
waits, as Nova does, until the host reports the ports ACTIVE, then runs a
DHCP client in the VM (lab/dhcp_client.py) and returns once it has its lease.
"""

from __future__ import annotations

import ipaddress
import json
import time
from typing import Any

from l3fabric.client import ApiError, FabricClient
from l3fabric.dataplane.links import tap_name
from l3fabric.lab import dhcp_client, netns
from l3fabric.lab.credentials import lab_client
from l3fabric.lab.errors import LabError
from l3fabric.lab.plan import Plan, vm_namespace
from l3fabric.lab.state import LabState
from l3fabric.lab.topology import NODE_NAME

GATEWAY4 = "169.254.1.1"  # answered by the host's proxy ARP
GATEWAY6 = "fe80::1"  # the host's link-local next hop on the tap
DEVICE_OWNER = "compute:lab"
TABLE_BASE = 100  # source-routing table of interface i: TABLE_BASE + i
# The group a VM booted without --security-group gets besides "default".
LAB_GROUP = "lab-open"


def _object_id(client: FabricClient, collection: str, what: str, ref: str) -> str:
    """An object by id, or else by name (exactly one must match)."""
    try:
        return client.get(collection, ref)["id"]
    except ApiError as exc:
        if exc.status != 404:
            raise
    found = client.list(collection, name=ref)
    if len(found) == 1:
        return found[0]["id"]
    if not found:
        raise LabError(f"no {what} named or with id {ref!r}")
    raise LabError(f"{len(found)} {what}s are named {ref!r}: give its id")


def lab_group(client: FabricClient) -> str:
    """The id of ``LAB_GROUP``, created with its rules if it is not there yet.

    Every protocol in, from anywhere, both families: what the lab's checks
    (the internet client, anycast clients, VMs of other networks) expect of
    a VM booted without ``--security-group``.
    """
    found = client.list("security-groups", name=LAB_GROUP)
    if found:
        return found[0]["id"]
    group = client.create(
        "security-groups",
        {"name": LAB_GROUP, "description": "lab: every protocol in from anywhere"},
    )
    for ethertype in ("IPv4", "IPv6"):
        client.create(
            "security-group-rules",
            {"security_group_id": group["id"], "direction": "ingress", "ethertype": ethertype},
        )
    return group["id"]


def security_group_ids(client: FabricClient, groups: list[str] | None) -> list[str]:
    """``--security-group`` names or ids as ids; none given: ``default`` and ``LAB_GROUP``."""
    if groups is None:
        return [
            _object_id(client, "security-groups", "security group", "default"),
            lab_group(client),
        ]
    return [_object_id(client, "security-groups", "security group", g) for g in groups]


def anycast_addresses(addresses: list[str]) -> list[str]:
    """The ``--anycast`` addresses, checked and normalised; LabError names a bad one."""
    out: list[str] = []
    for text in addresses:
        try:
            address = str(ipaddress.ip_address(text))
        except ValueError:
            raise LabError(f"--anycast {text!r}: not an IPv4 or IPv6 address") from None
        if address in out:
            raise LabError(f"--anycast {address} given twice")
        out.append(address)
    return out


def vm_lines(ports: list[dict[str, Any]], anycast: list[str] | None = None) -> list[str]:
    """``ip -batch`` lines that configure a VM's interfaces as a cloud image would."""
    lines = ["link set lo up"]
    for address in anycast or []:
        plen = 128 if ":" in address else 32
        lines.append(f"addr add {address}/{plen} dev lo")
    several = len(ports) > 1
    for i, port in enumerate(ports):
        dev = f"eth{i}"
        addresses = [ipaddress.ip_address(f["ip_address"]) for f in port["fixed_ips"]]
        for addr in addresses:
            lines.append(
                f"addr add {addr}/32 dev {dev}"
                if addr.version == 4
                else f"addr add {addr}/128 dev {dev} nodad"
            )
        lines.append(f"link set {dev} up")
        has4 = any(a.version == 4 for a in addresses)
        has6 = any(a.version == 6 for a in addresses)
        if i == 0:
            if has4:
                lines.append(f"route add default via {GATEWAY4} dev {dev} onlink")
            if has6:
                lines.append(f"route add default via {GATEWAY6} dev {dev}")
        if several:
            table = TABLE_BASE + i
            if has4:
                lines.append(f"route add default via {GATEWAY4} dev {dev} onlink table {table}")
            if has6:
                lines.append(f"route add default via {GATEWAY6} dev {dev} table {table}")
            lines += [f"rule add from {addr} table {table}" for addr in addresses]
    return lines


def boot(
    plan: Plan,
    state: LabState,
    name: str,
    networks: list[str],
    host: str,
    ips: list[str],
    anycast: list[str] | None = None,
    security_groups: list[str] | None = None,
    dhcp: str | None = None,
) -> dict[str, Any]:
    """Create the ports and the VM namespace; returns the VM's record.

    ``anycast``: addresses the VM holds on its loopback besides its ports' own.
    ``security_groups``: names or ids for every port (as ``openstack server
    create --security-group``); None: ``default`` and ``LAB_GROUP``.
    ``dhcp``: the DHCP client (``dhclient``, ``udhcpc``) that configures the
    VM instead of boot; None: configured as a cloud image would be.
    """
    held = anycast_addresses(anycast or [])
    if dhcp is not None and dhcp not in dhcp_client.CLIENTS:
        raise LabError(f"--dhcp-client {dhcp!r}: one of {', '.join(dhcp_client.CLIENTS)}")
    if not NODE_NAME.match(name):
        raise LabError("VM name: must start with a letter and hold only a-z, 0-9 and '-'")
    if state.vm_file(name).exists():
        raise LabError(f"VM {name} exists already (`l3fabric lab delete {name}` first)")
    node = plan.node(host) if host in plan.nodes else None
    if node is None or node.role != "host":
        hosts = ", ".join(n.name for n in plan.by_role("host"))
        raise LabError(f"--host {host}: not a compute host of lab {plan.lab} (hosts: {hosts})")
    if not networks:
        raise LabError("give at least one --network")
    if len(ips) > len(networks):
        raise LabError("more --ip than --network: give at most one --ip per --network, in order")
    ports: list[dict[str, Any]] = []
    with lab_client(plan) as client:
        try:
            groups = security_group_ids(client, security_groups)
            for i, network in enumerate(networks):
                attrs: dict[str, Any] = {
                    "network_id": _object_id(client, "networks", "network", network),
                    "security_groups": groups,
                    "name": f"{name}-eth{i}",
                    "device_id": name,
                    "device_owner": DEVICE_OWNER,
                    "binding:host_id": host,
                }
                if i < len(ips):
                    attrs["fixed_ips"] = [{"ip_address": ips[i]}]
                ports.append(client.create_port(**attrs))
        except (ApiError, LabError) as exc:
            for port in ports:
                client.delete("ports", port["id"])
            raise LabError(f"creating the ports of {name} failed: {exc}") from exc
    record = {
        "name": name,
        "host": host,
        "namespace": vm_namespace(plan.lab, name),
        "ports": [
            {
                "id": p["id"],
                "mac": p["mac_address"],
                "ifname": f"eth{i}",
                "tap": tap_name(p["id"]),
                "fixed_ips": p["fixed_ips"],
            }
            for i, p in enumerate(ports)
        ],
        "anycast": held,
        "dhcp": dhcp,
    }
    state.vm_file(name).write_text(json.dumps(record, indent=1))
    try:
        _build(record, node.namespace, ports, dhcp is not None)
        if dhcp is not None:
            record["dhcp_seconds"] = _dhcp(plan, state, record, dhcp)
    except LabError:
        delete(plan, state, name)
        raise
    return record


# How long boot --dhcp waits for the host to report the ports ACTIVE.
ACTIVE_TIMEOUT_S = 15.0


def _dhcp(
    plan: Plan, state: LabState, record: dict[str, Any], client_name: str
) -> dict[str, float]:
    """Wait for the ports to be ACTIVE (the host serves them), then get the leases.

    Returns the seconds each step took (``active``, ``lease``).
    """
    ids = [p["id"] for p in record["ports"]]
    started = time.monotonic()
    deadline = started + ACTIVE_TIMEOUT_S
    with lab_client(plan) as client:
        while True:
            ports = [client.get("ports", i) for i in ids]
            if all(p["status"] == "ACTIVE" for p in ports):
                break
            if time.monotonic() > deadline:
                raise LabError(
                    f"the ports of {record['name']} are not ACTIVE after {ACTIVE_TIMEOUT_S} s"
                )
            time.sleep(0.02)
        subnet_ids = {ip["subnet_id"] for p in ports for ip in p["fixed_ips"]}
        subnets = {i: client.get("subnets", i) for i in subnet_ids}
    interfaces = [
        (p["ifname"], dhcp_client.stateful_v6(port, subnets))
        for p, port in zip(record["ports"], ports, strict=True)
    ]
    directory = dhcp_dir(state, record["name"])
    active = time.monotonic()
    dhcp_client.run_clients(record["namespace"], directory, client_name, interfaces)
    return {"active": active - started, "lease": time.monotonic() - active}


def dhcp_dir(state: LabState, name: str) -> Any:
    """Where VM ``name``'s DHCP clients keep their files."""
    return state.dir / "dhcp" / name


def _build(
    record: dict[str, Any], host_ns: str, ports: list[dict[str, Any]], dhcp: bool = False
) -> None:
    vm_ns = record["namespace"]
    lines = [f"netns add {vm_ns}"]
    for p in record["ports"]:
        lines.append(
            f"link add {p['tap']} netns {host_ns} type veth "
            f"peer name {p['ifname']} address {p['mac']} netns {vm_ns}"
        )
    netns.batch(lines)
    sysctls = dict(netns.NO_FORWARDING)
    if dhcp:
        # Interfaces up, nothing else: the DHCP client configures them. No
        # DAD: dhclient -6 needs a usable link-local address at once.
        lines = vm_lines([], record["anycast"])
        lines += [f"link set {p['ifname']} up" for p in record["ports"]]
        sysctls |= {f"net.ipv6.conf.{p['ifname']}.accept_dad": "0" for p in record["ports"]}
    else:
        lines = vm_lines(ports, record["anycast"])
    netns.configure_many({vm_ns: (sysctls, lines)})


def delete(plan: Plan, state: LabState, name: str) -> None:
    """Delete the VM's ports through the API and its namespace (the taps go with it)."""
    path = state.vm_file(name)
    if not path.exists():
        raise LabError(f"lab {plan.lab} has no VM {name}")
    record = json.loads(path.read_text())
    with lab_client(plan) as client:
        for port in record["ports"]:
            try:
                client.delete("ports", port["id"])
            except ApiError as exc:
                if exc.status != 404:
                    raise LabError(f"deleting port {port['id']} failed: {exc}") from exc
    if record["namespace"] in netns.lab_namespaces(plan.lab):
        netns.delete([record["namespace"]])  # its DHCP clients with it
    dhcp_client.remove_etc(record["namespace"])
    path.unlink()
