"""Where each resource lives in the store.

Values are JSON objects. Neutron resources are stored exactly as the API
shows them (the Neutron v2.0 dict, e.g. a port has ``binding:host_id``,
``fixed_ips``, ``status``), so readers other than the API (the watch, the
agents) need no translation.
"""

from __future__ import annotations

NEUTRON = "/neutron/"

# Neutron collections, by their API name ("networks", "subnets", "ports",
# "security-groups", "security-group-rules", "routers", "floatingips").


def neutron_prefix(collection: str) -> str:
    """The prefix under which every object of a Neutron collection is stored."""
    return f"{NEUTRON}{collection}/"


def neutron_key(collection: str, object_id: str) -> str:
    return f"{neutron_prefix(collection)}{object_id}"


# IPAM: one key per allocated address, claimed with create-if-absent.
# Value: {"port_id": ..., "subnet_id": ..., "ip_address": ...}.
IPAM = "/ipam/"


def ipam_prefix(subnet_id: str) -> str:
    return f"{IPAM}{subnet_id}/"


def ipam_key(subnet_id: str, address: str) -> str:
    return f"{ipam_prefix(subnet_id)}{address}"


# Per network: Put by every write that gives an address on the network (a
# port, an anycast group), which also compares the network key. Subnet and
# network deletes compare this key's mod_revision from before they looked for
# allocations, so an allocation and a delete can never both commit (the etcd
# contract compares single keys, not "this prefix is empty").
# Value: {"network_id": ...}.
ALLOCATED = "/allocated/"


def allocated_key(network_id: str) -> str:
    return f"{ALLOCATED}{network_id}"


# Fabric (/v1): a single configuration object, gateways and hosts by name.
FABRIC_CONFIG = "/fabric/config"
GATEWAYS = "/fabric/gateways/"
HOSTS = "/fabric/hosts/"
ANYCAST = "/fabric/anycast/"


def gateway_key(name: str) -> str:
    return f"{GATEWAYS}{name}"


def host_key(name: str) -> str:
    return f"{HOSTS}{name}"


def anycast_key(anycast_id: str) -> str:
    return f"{ANYCAST}{anycast_id}"


# Liveness on etcd (service/liveness.py): a key per live agent, bound to a
# lease its heartbeats keep alive, so it vanishes when they stop. Written when
# the lease is new; read by no watch. Value: {"heartbeat_at": epoch seconds
# when it was taken}. kind: "host" or "gateway".
LIVE = "/live/"


def live_prefix(kind: str) -> str:
    return f"{LIVE}{kind}s/"


def live_key(kind: str, name: str) -> str:
    return f"{live_prefix(kind)}{name}"


# Quotas (Neutron's quotas API): a project's limits that differ from the
# defaults. Value: {resource: limit}, e.g. {"port": 1000}; -1 is unlimited.
QUOTAS = "/quotas/"


def quota_key(project_id: str) -> str:
    return f"{QUOTAS}{project_id}"


# Port bindings (Neutron's binding-extended): the active binding is the
# port's own binding:* attributes; each inactive one (a live migration's
# destination, or its source after activation) is a key of its own, which no
# watch follows. Value: the binding as the API shows it.
PORT_BINDINGS = "/port-bindings/"


def port_bindings_prefix(port_id: str) -> str:
    return f"{PORT_BINDINGS}{port_id}/"


def port_binding_key(port_id: str, host: str) -> str:
    return f"{port_bindings_prefix(port_id)}{host}"
