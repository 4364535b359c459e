"""Neutron's default policy, the parts l3fabric enforces (docs/api.md,
"Projects and policy").

A member sees its own project's resources (and shared or external networks
with their subnets); what it cannot see is 404, what it sees but may not
change is 403 (``PolicyNotAuthorized``). Admins see and change everything
and may act for any project.
"""

from __future__ import annotations

from typing import Any, Protocol

from l3fabric.service.errors import bad_request, not_allowed

JSON = dict[str, Any]


class Context(Protocol):
    """Who asks (``service.common.Context``; a protocol so common can use this module)."""

    @property
    def project_id(self) -> str: ...

    @property
    def is_admin(self) -> bool: ...

    @property
    def roles(self) -> frozenset[str]: ...


# The attributes only admins see and set (Neutron hides binding:host_id,
# profile, vif_type and vif_details; issue 12 asks the same of every binding:*).
BINDING_PREFIX = "binding:"
# Attributes only admins set (Neutron's create_network:shared and friends): a
# member's network made external would have its subnets announced upstream.
_ADMIN_ONLY = ("shared", "router:external")
_ADMIN_ONLY_PREFIXES = (BINDING_PREFIX, "provider:")


def owns(ctx: Context, obj: JSON) -> bool:
    """Admin, or the object is the caller's project's."""
    return ctx.is_admin or obj.get("project_id") == ctx.project_id


def check_writer(ctx: Context, action: str) -> None:
    """403 for a caller that may only read (Neutron: ADMIN_OR_PROJECT_MEMBER;
    a ``reader`` sees its project but changes nothing)."""
    if not (ctx.is_admin or "member" in ctx.roles):
        raise not_allowed(action)


def network_visible(ctx: Context, network: JSON) -> bool:
    """Neutron's get_network: owner, admin, shared, or external (read-only)."""
    return owns(ctx, network) or bool(network.get("shared")) or bool(network.get("router:external"))


def check_network_use(
    ctx: Context, network: JSON, action: str, missing: Exception, *, shared_ok: bool
) -> None:
    """May ``ctx`` put something (a subnet, a port) on ``network``? 404 (``missing``)
    when it may not see it, 403 when it sees it but neither owns it nor (where
    ``shared_ok``) it is shared: an external network is for floating IPs."""
    if not network_visible(ctx, network):
        raise missing
    if not (owns(ctx, network) or (shared_ok and network.get("shared"))):
        raise not_allowed(action)


def requested_project(attrs: JSON, ctx: Context) -> str:
    """The project a new resource is for: the body's, else the caller's.

    A member naming another project is refused as Neutron does (400)."""
    project = attrs.get("project_id") or attrs.get("tenant_id") or ctx.project_id
    if project != ctx.project_id and not ctx.is_admin:
        raise bad_request(
            "Specifying 'project_id' or 'tenant_id' other than the authenticated project"
            " in request requires admin privileges"
        )
    return str(project)


def hide_binding(port: JSON, ctx: Context) -> JSON:
    """The port as ``ctx`` may see it: without binding:* unless admin."""
    if ctx.is_admin:
        return port
    return {k: v for k, v in port.items() if not k.startswith(BINDING_PREFIX)}


def check_admin_only(
    ctx: Context, action: str, attrs: JSON, defaults: dict[str, Any] | None = None
) -> None:
    """403 when a member sets an admin-only attribute (binding:*, provider:*,
    shared, router:external). On create (``defaults`` given) sending the
    default value is no change, as in Neutron."""
    if ctx.is_admin:
        return
    for name, value in attrs.items():
        if name not in _ADMIN_ONLY and not name.startswith(_ADMIN_ONLY_PREFIXES):
            continue
        if defaults is not None and name in defaults and defaults[name] == value:
            continue
        raise not_allowed(f"{action}:{name}")


def defaults_of(model: Any) -> dict[str, Any]:
    """A pydantic body model's defaults by API name."""
    return {f.alias or n: f.default for n, f in model.model_fields.items()}


def check_network_owner(ctx: Context, network: JSON, action: str, attrs: dict[str, Any]) -> None:
    """Neutron's ``create_port:*`` / ``update_port:*`` rules that need the
    network's owner (or an admin): on a shared network of another project a
    member may let IPAM pick (or name a subnet), nothing more."""
    if owns(ctx, network):
        return
    for name in ("mac_address", "port_security_enabled", "allowed_address_pairs"):
        if name in attrs:
            raise not_allowed(f"{action}:{name}")
    owner = attrs.get("device_owner") or ""
    if owner.startswith("network:"):
        raise not_allowed(f"{action}:device_owner")
    if any(f.get("ip_address") for f in attrs.get("fixed_ips") or []):
        raise not_allowed(f"{action}:fixed_ips:ip_address")
