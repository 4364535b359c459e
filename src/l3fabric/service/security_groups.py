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
    standard_attrs,
    validate,
)
from l3fabric.service.errors import BadRequest, bad_request, conflict
from l3fabric.store import (
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

# Protocols whose port_range_min/max are ports; for ICMP they are type/code.
_PORT_PROTOCOLS = {"tcp", "udp", "sctp", "udplite", "dccp", "6", "17", "132", "136", "33"}
_ICMP_PROTOCOLS = {"icmp", "icmpv6", "ipv6-icmp", "1", "58"}
_NAMED_PROTOCOLS = (
    _PORT_PROTOCOLS
    | _ICMP_PROTOCOLS
    | {
        "ah",
        "esp",
        "gre",
        "igmp",
        "ipip",
        "ipv6-encap",
        "ipv6-frag",
        "ipv6-nonxt",
        "ipv6-opts",
        "ipv6-route",
        "ospf",
        "pgm",
        "rsvp",
        "vrrp",
    }
)
_RULE_MATCH = (
    "direction",
    "ethertype",
    "protocol",
    "port_range_min",
    "port_range_max",
    "remote_ip_prefix",
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
            **standard_attrs(body.api_attrs(), ctx),
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
        def plan(kv: KeyValue) -> list[Op]:
            if object_id == default_group_id(kv.value["project_id"]):
                raise conflict(
                    "SecurityGroupCannotRemoveDefault",
                    "The default security group cannot be deleted: ports without"
                    " security_groups use it.",
                )
            if self.ports.list(ctx, {"security_groups": [object_id]}):
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
        protocol = _protocol(body.protocol)
        _check_ports(protocol, body.port_range_min, body.port_range_max)
        if body.remote_ip_prefix is not None:
            version = ipaddress.ip_network(body.remote_ip_prefix).version
            if f"IPv{version}" != body.ethertype:
                raise bad_request(
                    f"Conflicting value ethertype {body.ethertype} for CIDR {body.remote_ip_prefix}"
                )
            if body.remote_group_id is not None:
                raise bad_request("Only remote_ip_prefix or remote_group_id may be provided.")
        if body.remote_group_id is not None:
            groups.read(body.remote_group_id)
        for _ in range(WRITE_ATTEMPTS):
            group_kv = groups.read(body.security_group_id)
            group = group_kv.value
            rule = _rule(
                group["id"],
                group["project_id"],
                **{k: v for k, v in attrs.items() if k not in ("project_id", "tenant_id")},
            )
            rule["protocol"] = protocol
            for existing in group["security_group_rules"]:
                if all(existing[k] == rule[k] for k in _RULE_MATCH):
                    raise conflict(
                        "SecurityGroupRuleExists",
                        f"Security group rule already exists. Rule id is {existing['id']}.",
                    )
            new_group = bumped(
                group, {"security_group_rules": [*group["security_group_rules"], rule]}
            )
            try:
                self.store.txn(
                    [
                        Create(self.key(rule["id"]), rule),
                        Update(group_kv.key, new_group, group_kv.mod_revision),
                    ]
                )
            except RevisionMismatchError:
                continue
            return rule
        raise busy("Security group", body.security_group_id)

    def update(self, object_id: str, data: Any, ctx: Context, if_match: int | None) -> JSON:
        self.read(object_id)
        raise bad_request(
            "Security group rules cannot be updated; delete the rule and create a new one."
        )

    def delete(self, object_id: str, ctx: Context, if_match: int | None = None) -> None:
        def plan(kv: KeyValue) -> list[Op]:
            group_kv = self.security_groups.read(kv.value["security_group_id"])
            keep = [r for r in group_kv.value["security_group_rules"] if r["id"] != object_id]
            new_group = bumped(group_kv.value, {"security_group_rules": keep})
            return [Update(group_kv.key, new_group, group_kv.mod_revision)]

        self.remove(object_id, if_match, plan)


def _protocol(value: str | int | None) -> str | None:
    """Neutron's protocol values: null/"any", a name, or a number 0-255 (kept as a string)."""
    if value is None:
        return None
    text = str(value).lower()
    if text == "any":
        return None
    if text.isdigit():
        if int(text) > 255:
            raise bad_request(f"Security group rule protocol {value} not supported: must be 0-255")
        return str(int(text))
    if text not in _NAMED_PROTOCOLS:
        raise bad_request(
            f"Security group rule protocol {value} not supported. Only protocol values"
            f" {sorted(_NAMED_PROTOCOLS)} and integer representations [0 to 255] are supported."
        )
    return text


def _check_ports(protocol: str | None, low: int | None, high: int | None) -> None:
    if low is None and high is None:
        return
    if protocol in _PORT_PROTOCOLS:
        if low is None or high is None or not 1 <= low <= high:
            raise _invalid_range(low, high, "ports need 1 <= port_range_min <= port_range_max")
    elif protocol in _ICMP_PROTOCOLS:
        if low is None or low > 255 or (high is not None and high > 255):
            raise _invalid_range(low, high, "ICMP type (min) and code (max) are 0-255, type first")
    else:
        raise _invalid_range(low, high, f"protocol {protocol} has no ports")


def _invalid_range(low: int | None, high: int | None, why: str) -> BadRequest:
    return bad_request(f"Invalid port range {low}:{high}: {why}", "SecurityGroupInvalidPortRange")
