"""Security groups and their rules (stored; the host agent enforces them).

As in Neutron, every project has a group named ``default`` created on first
use (first network, port or security-group call), a new group starts with
"allow all egress" rules, and a group's ``security_group_rules`` embeds
its rules. A rule is also its own key, written in the same transaction as
its group, whose revision it bumps.

The default group's id is derived from the project id (uuid5), so two
servers creating it at once both Create the same key and one simply loses.
"""

from __future__ import annotations

import contextlib
import ipaddress
import uuid
from typing import Any

from l3fabric.keys import neutron_key, neutron_prefix
from l3fabric.model.neutron import SecurityGroupBody, SecurityGroupRuleBody
from l3fabric.protocols import ICMP_PROTOCOLS, PORT_PROTOCOLS, PROTOCOL_NUMBERS
from l3fabric.service.common import (
    JSON,
    WRITE_ATTEMPTS,
    Collection,
    Context,
    Resource,
    bumped,
    busy,
    new_id,
    now,
    validate,
)
from l3fabric.service.errors import bad_request, conflict
from l3fabric.store import (
    Compare,
    Create,
    Delete,
    KeyExistsError,
    KeyValue,
    Op,
    RevisionMismatchError,
    Store,
    Update,
)

_DEFAULT_GROUP_NS = uuid.UUID("5b0c8f1e-3a55-4e8e-9a63-2f6d6f1b3c01")

# Neutron refuses these with ethertype IPv4 (SecurityGroupEthertypeConflictWithProtocol).
_IPV6_ONLY = {
    *("ipv6-encap", "ipv6-frag", "ipv6-icmp", "icmpv6", "ipv6-nonxt", "ipv6-opts", "ipv6-route"),
    *("41", "44", "58", "59", "60", "43"),
}
# What makes two rules the same rule (Neutron's _rule_to_key).
_RULE_MATCH = (
    "direction",
    "ethertype",
    "port_range_min",
    "port_range_max",
    "remote_group_id",
)


def default_group_id(project_id: str) -> str:
    return str(uuid.uuid5(_DEFAULT_GROUP_NS, project_id))


def _rule(group_id: str, project_id: str, **attrs: Any) -> JSON:
    stamp = now()
    rule = {
        "id": new_id(),
        "security_group_id": group_id,
        "direction": "ingress",
        "ethertype": "IPv4",
        "protocol": None,
        "port_range_min": None,
        "port_range_max": None,
        "remote_ip_prefix": None,
        "normalized_cidr": None,
        "remote_group_id": None,
        "remote_address_group_id": None,
        "description": "",
        "project_id": project_id,
        "tenant_id": project_id,
        "created_at": stamp,
        "updated_at": stamp,
        "revision_number": 0,
    }
    rule.update(attrs)
    rule["normalized_cidr"] = rule["remote_ip_prefix"]
    return rule


def _egress_rules(group_id: str, project_id: str) -> list[JSON]:
    return [_rule(group_id, project_id, direction="egress", ethertype=e) for e in ("IPv4", "IPv6")]


class SecurityGroups(Resource):
    collection = "security-groups"
    singular = "security_group"
    plural = "security_groups"
    not_found_type = "SecurityGroupNotFound"
    label = "Security group"
    model = SecurityGroupBody

    def __init__(self, store: Store, *, ports: Collection) -> None:
        super().__init__(store)
        self.ports = ports

    def ensure_default(self, project_id: str) -> str:
        """The id of the project's default group, created if it is not there yet."""
        group_id = default_group_id(project_id)
        if self.store.get(self.key(group_id)) is not None:
            return group_id
        rules = _egress_rules(group_id, project_id) + [
            _rule(group_id, project_id, ethertype=e, remote_group_id=group_id)
            for e in ("IPv4", "IPv6")
        ]
        stamp = now()
        group = {
            "id": group_id,
            "name": "default",
            "description": "Default security group",
            "project_id": project_id,
            "tenant_id": project_id,
            "security_group_rules": rules,
            "created_at": stamp,
            "updated_at": stamp,
            "revision_number": 0,
        }
        ops: list[Op] = [Create(self.key(group_id), group)]
        ops += [Create(neutron_key("security-group-rules", r["id"]), r) for r in rules]
        with contextlib.suppress(KeyExistsError):  # another request created it first
            self.store.txn(ops)
        return group_id

    def list(self, ctx: Context, filters: dict[str, list[str]] | None = None) -> list[JSON]:
        self.ensure_default(ctx.project_id)
        return super().list(ctx, filters)

    def create(self, data: Any, ctx: Context) -> JSON:
        body = validate(SecurityGroupBody, data, create=True)
        group = {
            **self.new_attrs(body.api_attrs(), ctx),
            "name": body.name,
            "description": body.description,
        }
        if body.name == "default":
            raise conflict(
                "SecurityGroupDefaultAlreadyExists",
                "Default security group already exists; name another group differently.",
            )
        self.ensure_default(group["project_id"])
        rules = _egress_rules(group["id"], group["project_id"])
        group["security_group_rules"] = rules
        ops: list[Op] = [Create(self.key(group["id"]), group)]
        ops += [Create(neutron_key("security-group-rules", r["id"]), r) for r in rules]
        self.store.txn(ops)
        return group

    def changes(self, old: JSON, attrs: JSON) -> JSON:
        if old["name"] == "default" and attrs.get("name", "default") != "default":
            raise conflict(
                "SecurityGroupCannotUpdateDefault", "Updating default security group not allowed."
            )
        if attrs.get("name") == "default" and old["name"] != "default":
            raise conflict(
                "SecurityGroupDefaultAlreadyExists", "Default security group already exists."
            )
        return attrs

    def delete(self, object_id: str, ctx: Context, if_match: int | None = None) -> None:
        self.authorize(object_id, ctx, f"delete_{self.singular}")

        def plan(kv: KeyValue) -> list[Op]:
            if object_id == default_group_id(kv.value["project_id"]):
                raise conflict(
                    "SecurityGroupCannotRemoveDefault",
                    "The default security group cannot be deleted: ports without"
                    " security_groups use it.",
                )
            if self.ports.list(Context(), {"security_groups": [object_id]}):
                raise conflict("SecurityGroupInUse", f"Security Group {object_id} in use.")
            ops: list[Op] = [
                Delete(neutron_key("security-group-rules", r["id"]))
                for r in kv.value["security_group_rules"]
            ]
            # Rules of other groups that point at this one go with it (Neutron cascades).
            groups, _ = self.store.range(neutron_prefix(self.collection))
            for other in groups:
                if other.key == kv.key:
                    continue
                gone = [
                    r
                    for r in other.value["security_group_rules"]
                    if r["remote_group_id"] == object_id
                ]
                if gone:
                    keep = [r for r in other.value["security_group_rules"] if r not in gone]
                    new = bumped(other.value, {"security_group_rules": keep})
                    ops.append(Update(other.key, new, other.mod_revision))
                    ops += [Delete(neutron_key("security-group-rules", r["id"])) for r in gone]
            return ops

        self.remove(object_id, if_match, plan)


class SecurityGroupRules(Resource):
    collection = "security-group-rules"
    singular = "security_group_rule"
    plural = "security_group_rules"
    not_found_type = "SecurityGroupRuleNotFound"
    label = "Security group rule"
    model = SecurityGroupRuleBody

    def __init__(self, store: Store, *, security_groups: Collection) -> None:
        super().__init__(store)
        self.security_groups = security_groups

    def create(self, data: Any, ctx: Context) -> JSON:
        body = validate(SecurityGroupRuleBody, data, create=True)
        attrs = body.api_attrs()
        groups = self.security_groups
        protocol = _protocol(body.protocol, body.ethertype)
        _check_ports(protocol, body.port_range_min, body.port_range_max)
        if protocol in _IPV6_ONLY and body.ethertype == "IPv4":
            raise bad_request(
                f"Invalid ethertype {body.ethertype} for protocol {protocol}.",
                "SecurityGroupEthertypeConflictWithProtocol",
            )
        if body.remote_ip_prefix is not None:
            version = ipaddress.ip_network(body.remote_ip_prefix).version
            if f"IPv{version}" != body.ethertype:
                raise bad_request(
                    f"Conflicting value ethertype {body.ethertype} for CIDR"
                    f" {body.remote_ip_prefix}",
                    "SecurityGroupRuleParameterConflict",
                )
            if body.remote_group_id is not None:
                raise bad_request(
                    "Only remote_ip_prefix or remote_group_id may be provided.",
                    "SecurityGroupRemoteGroupAndRemoteIpPrefix",
                )
        # Only the caller's own groups, for the rule and as its remote group (404 otherwise).
        owner = groups.authorize(body.security_group_id, ctx, "create_security_group_rule")
        self.quota(self.singular, owner["project_id"])
        if body.remote_group_id is not None:
            groups.get(body.remote_group_id, ctx)
        for _ in range(WRITE_ATTEMPTS):
            ops: list[Op] = []
            if body.remote_group_id not in (None, body.security_group_id):
                # The remote group must still be there when the rule is written:
                # its delete removes the rules that point at it.
                remote = groups.read(body.remote_group_id)
                ops.append(Compare(remote.key, remote.mod_revision))
            group_kv = groups.read(body.security_group_id)
            group = group_kv.value
            rule = _rule(
                group["id"],
                group["project_id"],
                **{k: v for k, v in attrs.items() if k not in ("project_id", "tenant_id")},
            )
            rule["protocol"] = protocol
            for existing in group["security_group_rules"]:
                if _same_rule(existing, rule):
                    raise conflict(
                        "SecurityGroupRuleExists",
                        f"Security group rule already exists. Rule id is {existing['id']}.",
                    )
            new_group = bumped(
                group, {"security_group_rules": [*group["security_group_rules"], rule]}
            )
            ops += [
                Create(self.key(rule["id"]), rule),
                Update(group_kv.key, new_group, group_kv.mod_revision),
            ]
            try:
                self.store.txn(ops)
            except RevisionMismatchError:
                continue
            return rule
        raise busy("Security group", body.security_group_id)

    def update(self, object_id: str, data: Any, ctx: Context, if_match: int | None) -> JSON:
        self.authorize(object_id, ctx, "update_security_group_rule")
        raise bad_request(
            "Security group rules cannot be updated; delete the rule and create a new one."
        )

    def delete(self, object_id: str, ctx: Context, if_match: int | None = None) -> None:
        self.authorize(object_id, ctx, f"delete_{self.singular}")

        def plan(kv: KeyValue) -> list[Op]:
            group_kv = self.security_groups.read(kv.value["security_group_id"])
            keep = [r for r in group_kv.value["security_group_rules"] if r["id"] != object_id]
            new_group = bumped(group_kv.value, {"security_group_rules": keep})
            return [Update(group_kv.key, new_group, group_kv.mod_revision)]

        self.remove(object_id, if_match, plan)


def _protocol(value: str | int | None, ethertype: str) -> str | None:
    """Neutron's protocol values: null/"any", a name, or a number 0-255 (kept as a
    string). For IPv6, ICMP's legacy spellings become ``ipv6-icmp`` (or 58), as Neutron does."""
    if value is None:
        return None
    text = str(value).lower()
    if text == "any":
        return None
    if text.isdigit():
        if int(text) > 255:
            raise bad_request(f"Security group rule protocol {value} not supported: must be 0-255")
        text = str(int(text))
        return "58" if ethertype == "IPv6" and text == "1" else text
    if text not in PROTOCOL_NUMBERS:
        raise bad_request(
            f"Security group rule protocol {value} not supported. Only protocol values"
            f" {sorted(PROTOCOL_NUMBERS)} and integer representations [0 to 255] are supported.",
            "SecurityGroupRuleInvalidProtocol",
        )
    return "ipv6-icmp" if ethertype == "IPv6" and text in ("icmp", "icmpv6") else text


def protocol_number(protocol: str | None) -> int | None:
    """The IP protocol number of a stored rule's protocol (None: any)."""
    if protocol is None:
        return None
    return int(protocol) if protocol.isdigit() else PROTOCOL_NUMBERS[protocol]


def _same_rule(a: JSON, b: JSON) -> bool:
    """Neutron's duplicate test: names and numbers of a protocol are one protocol,
    and a prefix of every address is no prefix."""

    def prefix(rule: JSON) -> str | None:
        value = rule["remote_ip_prefix"]
        return None if value in ("0.0.0.0/0", "::/0") else value

    return (
        all(a[k] == b[k] for k in _RULE_MATCH)
        and protocol_number(a["protocol"]) == protocol_number(b["protocol"])
        and prefix(a) == prefix(b)
    )


def _check_ports(protocol: str | None, low: int | None, high: int | None) -> None:
    """Neutron's checks of port_range_min/max (for ICMP: type and code)."""
    if low is None and high is None:
        return
    if protocol is None:
        raise bad_request(
            "Must also specify protocol if port range is given.",
            "SecurityGroupProtocolRequiredWithPorts",
        )
    number = protocol_number(protocol)
    if number in PORT_PROTOCOLS:
        if low == 0 or high == 0:
            raise bad_request("Invalid value for port 0", "SecurityGroupInvalidPortValue")
        if low is None or high is None or low > high:
            raise bad_request(
                "For TCP/UDP protocols, port_range_min must be <= port_range_max",
                "SecurityGroupInvalidPortRange",
            )
    elif number in ICMP_PROTOCOLS:
        for value, field, attr in (
            (low, "type", "port_range_min"),
            (high, "code", "port_range_max"),
        ):
            if value is not None and not 0 <= value <= 255:
                raise bad_request(
                    f"Invalid value for ICMP {field} ({attr}) {value}. It must be 0 to 255.",
                    "SecurityGroupInvalidIcmpValue",
                )
        if low is None:
            raise bad_request(
                f"ICMP code (port-range-max) {high} is provided but ICMP type (port-range-min)"
                " is missing.",
                "SecurityGroupMissingIcmpType",
            )
    else:
        raise bad_request(
            f"Invalid protocol {protocol} for port range, only supported for TCP, UDP, UDPLITE,"
            " SCTP and DCCP protocols.",
            "SecurityGroupInvalidProtocolForPort",
        )
