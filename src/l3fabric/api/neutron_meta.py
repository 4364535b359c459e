"""The Neutron API's self-description: version document, resource list and
the extensions we advertise.

Clients (openstacksdk, the ``openstack`` CLI) decide what to send from the
extension list, so it names only what this server really implements.
"""

from __future__ import annotations

from typing import Any

# alias -> (name, description). Only what is implemented, nothing aspirational.
EXTENSIONS: dict[str, tuple[str, str]] = {
    "external-net": (
        "Neutron external network",
        "router:external on networks: their subnets are public (announced upstream, no NAT)",
    ),
    "binding": (
        "Port Binding",
        "binding:host_id and friends: which host a port lives on; vif_type tap with the"
        " vif_details Nova's libvirt driver takes",
    ),
    "binding-extended": (
        "Port Bindings Extended",
        "/ports/{id}/bindings: a binding per host, activated by live migration",
    ),
    "allowed-address-pairs": (
        "Allowed Address Pairs",
        "extra addresses a port may source and receive (anycast, moved addresses)",
    ),
    "security-group": ("security-group", "security groups and rules, a default group per project"),
    "port-security": (
        "Port Security",
        "port_security_enabled on networks and ports: off means no security groups, no"
        " filtering and no anti-spoofing for the port",
    ),
    "provider": ("Provider Network", "provider:* attributes on networks (accepted and stored)"),
    "net-mtu": ("Network MTU", "the mtu attribute of networks"),
    "standard-attr-revisions": ("Resource revision numbers", "revision_number on every resource"),
    "revision-if-match": (
        "If-Match constraints based on revision_number",
        "If-Match: revision_number=N on updates and deletes",
    ),
    "standard-attr-timestamp": ("Resource timestamps", "created_at and updated_at"),
    "standard-attr-description": ("standard-attr-description", "description on every resource"),
    "project-id": ("project_id field enabled", "project_id alongside tenant_id"),
    "router": (
        "Neutron L3 Router",
        "routers, router interfaces and floating IPs, stored only: the routed fabric and the"
        " edge gateway already connect every network, and floating IPs forward nothing",
    ),
    "pagination": ("Pagination support", "limit and marker on lists"),
    "sorting": ("Sorting support", "sort_key and sort_dir on lists"),
    "quotas": (
        "Quota management support",
        "per-project limits with Neutron's defaults: /v2.0/quotas, admins set them",
    ),
    "quota_details": ("Quota details extension", "used and limit per resource (/details)"),
}

# URL collection -> the resource's singular name.
RESOURCES = {
    "networks": "network",
    "subnets": "subnet",
    "ports": "port",
    "security-groups": "security_group",
    "security-group-rules": "security_group_rule",
    "routers": "router",
    "floatingips": "floatingip",
}

_UPDATED = "2026-11-27T00:00:00-00:00"


def version_document(base: str) -> dict[str, Any]:
    """``GET /``: the clients' version discovery needs id, status and links."""
    return {
        "versions": [
            {"id": "v2.0", "status": "CURRENT", "links": [{"rel": "self", "href": f"{base}v2.0/"}]}
        ]
    }


def resources_document(base: str) -> dict[str, Any]:
    return {
        "resources": [
            {
                "name": name,
                "collection": collection,
                "links": [{"rel": "self", "href": f"{base}v2.0/{collection}"}],
            }
            for collection, name in RESOURCES.items()
        ]
    }


def extension(alias: str) -> dict[str, Any] | None:
    if alias not in EXTENSIONS:
        return None
    name, description = EXTENSIONS[alias]
    return {
        "alias": alias,
        "name": name,
        "description": description,
        "updated": _UPDATED,
        "links": [],
    }


def extensions() -> list[dict[str, Any]]:
    return [e for alias in EXTENSIONS if (e := extension(alias)) is not None]
