"""Neutron's ``binding-extended``: a port's bindings, one per host, and their
activation, as Nova's live migration uses them.

A port has at most one ACTIVE binding: its own ``binding:*`` attributes,
which is what the watch sends to hosts. Nova creates an INACTIVE binding on
the destination host before it moves the VM and activates it once the VM
runs there: activation is one store transaction that rebinds the port to the
destination (the destination's agent routes the VM, the source's withdraws
it) and keeps the source's binding as INACTIVE, for Nova to delete (or to
activate again on a rollback). The port's status becomes DOWN until the
destination's agent reports it ACTIVE, as in Neutron, so Nova hears
``network-vif-plugged`` from the destination.

Policy as in Neutron: every binding call is for admins and the ``service``
role (Nova); anyone else gets 403.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import Field

from l3fabric.keys import port_binding_key, port_bindings_prefix
from l3fabric.model.bounded import BoundedJson
from l3fabric.model.neutron import Body, Name
from l3fabric.service.common import JSON, Contended, Context, Plan, busy, revise, validate
from l3fabric.service.errors import bad_request, conflict, not_allowed, not_found
from l3fabric.service.ports import Ports, vif_details
from l3fabric.store import Delete, KeyExistsError, KeyNotFoundError, Op, Put, Store

ACTIVE = "ACTIVE"
INACTIVE = "INACTIVE"
# Neutron's port_bindings policies: ADMIN_OR_SERVICE.
_ROLES = frozenset({"admin", "service"})


class BindingBody(Body):
    """The body of a binding create (``host`` required) or update."""

    CREATE_ONLY = frozenset({"host"})
    REQUIRED = frozenset({"host"})

    host: Name = ""
    vnic_type: Literal["normal"] = "normal"
    profile: BoundedJson = Field(default_factory=dict)


def binding_of(port: JSON) -> JSON | None:
    """The port's ACTIVE binding as the API shows it, None when it is unbound."""
    host = port.get("binding:host_id") or ""
    if not host:
        return None
    return _binding(
        host, port.get("binding:vnic_type", "normal"), port.get("binding:profile") or {}, ACTIVE
    )


def _binding(host: str, vnic_type: str, profile: JSON, status: str) -> JSON:
    return {
        "host": host,
        "vif_type": "tap",
        "vif_details": vif_details(host),
        "profile": profile,
        "vnic_type": vnic_type,
        "status": status,
    }


def _missing(port_id: str, host: str) -> Exception:
    return not_found(
        "PortBindingNotFound", f"Binding for port {port_id} for host {host} could not be found."
    )


class PortBindings:
    """The bindings of the ports of ``ports`` (its store, its visibility rules)."""

    def __init__(self, store: Store, ports: Ports) -> None:
        self.store = store
        self.ports = ports

    def _port(self, port_id: str, ctx: Context, action: str) -> JSON:
        if not (ctx.roles & _ROLES):
            # Neutron answers a member that may see the port 403, others 404.
            self.ports.get(port_id, ctx)
            raise not_allowed(action)
        if "/" in port_id:
            raise self.ports.missing(port_id)
        return self.ports.read(port_id).value

    def _inactive(self, port_id: str) -> list[JSON]:
        kvs, _ = self.store.range(port_bindings_prefix(port_id))
        return [kv.value for kv in kvs]

    def list(self, port_id: str, ctx: Context, filters: dict[str, list[str]]) -> list[JSON]:
        port = self._port(port_id, ctx, "get_port_binding")
        active = binding_of(port)
        # An inactive record for the active host (the port was rebound by a
        # plain port update meanwhile) is shadowed by the active binding.
        inactive = [b for b in self._inactive(port_id) if not active or b["host"] != active["host"]]
        found = [*([active] if active else []), *inactive]
        return [b for b in found if all(str(b.get(k)) in v for k, v in filters.items())]

    def get(self, port_id: str, host: str, ctx: Context) -> JSON:
        port = self._port(port_id, ctx, "get_port_binding")
        active = binding_of(port)
        if active is not None and active["host"] == host:
            return active
        kv = self.store.get(port_binding_key(port_id, host))
        if kv is None:
            raise _missing(port_id, host)
        return kv.value

    def create(self, port_id: str, data: object, ctx: Context) -> JSON:
        """A new binding on ``host``: ACTIVE for an unbound port (it binds it), else INACTIVE."""
        body = validate(BindingBody, data, create=True)
        if not body.host:
            raise bad_request("Invalid input for host: a binding needs a host")
        port = self._port(port_id, ctx, "create_port_binding")
        host = body.host
        exists = conflict(
            "PortBindingAlreadyExists", f"Binding for port {port_id} on host {host} already exists."
        )
        if port.get("binding:host_id") == host:
            raise exists
        if not port.get("binding:host_id"):
            # An unbound port: the new binding is the active one.
            self._revise(port_id, lambda old: _bind_unbound(old, host, body, exists))
            return _binding(host, body.vnic_type, body.profile, ACTIVE)
        binding = _binding(host, body.vnic_type, body.profile, INACTIVE)
        try:
            self.store.create(port_binding_key(port_id, host), binding)
        except KeyExistsError:
            raise exists from None
        return binding

    def update(self, port_id: str, host: str, data: object, ctx: Context) -> JSON:
        """Change a binding's vnic_type or profile (the active one: the port's)."""
        body = validate(BindingBody, data, create=False)
        sent = body.model_fields_set
        self._port(port_id, ctx, "update_port_binding")
        current = self.get(port_id, host, ctx)
        vnic = body.vnic_type if "vnic_type" in sent else current["vnic_type"]
        profile = body.profile if "profile" in sent else current["profile"]
        if current["status"] == ACTIVE:
            self._revise(port_id, lambda port: (_bind(host, vnic, profile, status=False), []))
            return _binding(host, vnic, profile, ACTIVE)
        binding = _binding(host, vnic, profile, INACTIVE)
        self.store.put(port_binding_key(port_id, host), binding)
        return binding

    def activate(self, port_id: str, host: str, ctx: Context) -> JSON:
        """Make ``host``'s binding the active one; the old active one stays, INACTIVE."""
        self._port(port_id, ctx, "activate")
        key = port_binding_key(port_id, host)
        taken: list[JSON] = []

        def plan(port: JSON) -> tuple[JSON, list[Op]]:
            old = binding_of(port)
            if old is not None and old["host"] == host:
                raise conflict(
                    "PortBindingAlreadyActive",
                    f"Binding for port {port_id} on host {host} is already active.",
                )
            kv = self.store.get(key)
            if kv is None:
                raise _missing(port_id, host)
            new = kv.value
            ops: list[Op] = [Delete(key, kv.mod_revision)]
            if old is not None:
                ops.append(Put(port_binding_key(port_id, old["host"]), {**old, "status": INACTIVE}))
            taken[:] = [new]
            return _bind(host, new["vnic_type"], new["profile"]), ops

        self._revise(port_id, plan)
        return {**taken[0], "status": ACTIVE}

    def delete(self, port_id: str, host: str, ctx: Context) -> None:
        """Delete an inactive binding; deleting the active one unbinds the port."""
        self._port(port_id, ctx, "delete_port_binding")
        kv = self.store.get(port_binding_key(port_id, host))
        if kv is not None:
            self.store.delete(kv.key, kv.mod_revision)
            return

        def plan(port: JSON) -> tuple[JSON, list[Op]]:
            if port.get("binding:host_id") != host:
                raise _missing(port_id, host)
            return _bind("", "normal", {}), []

        self._revise(port_id, plan)

    def _revise(self, port_id: str, plan: Callable[[JSON], Plan]) -> JSON:
        try:
            new = revise(self.store, self.ports.key(port_id), plan)
        except KeyNotFoundError:
            raise self.ports.missing(port_id) from None
        except Contended:
            raise busy(self.ports.label, port_id) from None
        assert new is not None
        return new


def _bind(host: str, vnic_type: str, profile: JSON, status: bool = True) -> JSON:
    """The port attributes of an active binding on ``host`` (status DOWN until
    that host's agent reports the port up)."""
    changes: JSON = {
        "binding:host_id": host,
        "binding:vnic_type": vnic_type,
        "binding:profile": profile,
        "binding:vif_type": "tap" if host else "unbound",
        "binding:vif_details": vif_details(host),
    }
    if status and host:
        changes["status"] = "DOWN"
    return changes


def _bind_unbound(port: JSON, host: str, body: BindingBody, exists: Exception) -> Plan:
    """Bind a port that was unbound when we looked (409 if it got bound meanwhile)."""
    if port.get("binding:host_id"):
        raise exists
    return _bind(host, body.vnic_type, body.profile), []
