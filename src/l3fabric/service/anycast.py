"""Anycast groups (``/v1/anycast``): one address held by several ports, with a health check.

Owns the group's schema and validation, reserving its address, membership
changes, the status agents report, and which groups concern which watcher.

The address is reserved exactly as a port's fixed IP is: a Create of
``ipam_key(subnet, address)`` in the same transaction as the group, so no
port (and no other group) can ever take it; deleting the group deletes that
key in the same transaction as the group.

A port that is a member of a group cannot be deleted (409 ``PortInUse``):
membership is an explicit decision of the operator, and a group silently
shrinking (down to none) would withdraw a service address unnoticed.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable
from dataclasses import KW_ONLY, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from l3fabric import keys
from l3fabric.addresses import IpAddressText
from l3fabric.ipam import Allocator, claim_guard
from l3fabric.service.common import (
    JSON,
    WRITE_ATTEMPTS,
    Collection,
    Contended,
    Context,
    busy,
    new_id,
    now,
    revise,
)
from l3fabric.service.errors import NotFound, bad_request, conflict, forbidden, not_found
from l3fabric.service.subnets import usable
from l3fabric.store import (
    Create,
    Delete,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    Op,
    RevisionMismatchError,
    Store,
)

# Each lost claim means another writer won an address; bounds the retry loop.
CLAIM_ATTEMPTS = 4 * WRITE_ATTEMPTS
# What agents report lives apart from the group so that reports never wake watches.
STATUS_PREFIX = "/fabric/status/anycast/"
MemberState = Literal["healthy", "unhealthy"]
# Fixed at create: the address is the group's identity on the wire.
READ_ONLY = frozenset({"id", "subnet_id", "network_id", "ip_version", "address"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HealthCheck(_Strict):
    """How the host agent probes each local member (from the host, to the member's address)."""

    type: Literal["tcp", "http", "icmp"]
    port: int | None = Field(None, ge=1, le=65535)
    path: str | None = None
    interval_s: float = Field(1.0, gt=0, le=3600)
    timeout_s: float = Field(0.5, gt=0, le=3600)
    rise: int = Field(2, ge=1, le=100)
    fall: int = Field(2, ge=1, le=100)

    @model_validator(mode="after")
    def _consistent(self) -> HealthCheck:
        if self.type in ("tcp", "http") and self.port is None:
            raise ValueError(f"a {self.type} check needs a port")
        if self.type == "icmp" and self.port is not None:
            raise ValueError("an icmp check has no port")
        if self.type != "http" and self.path is not None:
            raise ValueError("only an http check has a path")
        if self.type == "http":
            self.path = self.path or "/"
            if not self.path.startswith("/"):
                raise ValueError(f"the http path must start with '/', got {self.path!r}")
        if self.timeout_s > self.interval_s:
            raise ValueError("timeout_s must not be longer than interval_s")
        return self


_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


class AnycastCreate(_Strict):
    name: str = Field(pattern=_NAME)
    subnet_id: str = Field(min_length=1, max_length=255)
    # Canonical text, no zone ID: the address is an IPAM key and reaches BIRD.
    address: IpAddressText | None = None
    members: list[str] = []
    health_check: HealthCheck | None = None


class AnycastUpdate(_Strict):
    name: str | None = Field(None, pattern=_NAME)
    members: list[str] | None = None
    health_check: HealthCheck | None = None


class StatusReport(_Strict):
    """One host's verdict on its local members of a group."""

    host: str = Field(pattern=_NAME)
    members: dict[str, MemberState]


def _unwrap(payload: Any) -> Any:
    # Bodies are plain objects (docs/fabric-api.md); a Neutron-style envelope is accepted too.
    if isinstance(payload, dict) and set(payload) == {"anycast"}:
        return payload["anycast"]
    return payload


def _parse(model: type[BaseModel], payload: Any) -> Any:
    payload = _unwrap(payload)
    if not isinstance(payload, dict):
        raise bad_request(f"the body must be a JSON object, got {type(payload).__name__}")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: "
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise bad_request(f"Invalid anycast group: {problems}") from None


def _missing(anycast_id: str) -> NotFound:
    return not_found("AnycastNotFound", f"Anycast group {anycast_id} could not be found.")


@dataclass(frozen=True)
class AnycastGroups:
    """The /v1/anycast semantics over the store, sharing the Neutron service's IPAM."""

    store: Store
    ipam: Allocator
    _: KW_ONLY
    networks: Collection
    subnets: Collection
    ports: Collection

    # Reading --------------------------------------------------------------------

    def _read(self, anycast_id: str) -> KeyValue:
        kv = self.store.get(keys.anycast_key(anycast_id)) if "/" not in anycast_id else None
        if kv is None:
            raise _missing(anycast_id)
        return kv

    def list(self) -> list[JSON]:
        kvs, _ = self.store.range(keys.ANYCAST)
        statuses, _ = self.store.range(STATUS_PREFIX)
        return [self._view(kv.value, statuses) for kv in kvs]

    def get(self, anycast_id: str) -> JSON:
        value = self._read(anycast_id).value
        statuses, _ = self.store.range(f"{STATUS_PREFIX}{anycast_id}/")
        return self._view(value, statuses)

    @staticmethod
    def _view(value: JSON, statuses: Iterable[Any]) -> JSON:
        """The group as stored plus what the agents last reported about its members."""
        prefix = f"{STATUS_PREFIX}{value['id']}/"
        reported: dict[str, str] = {}
        for kv in statuses:
            if kv.key.startswith(prefix):
                reported.update(kv.value.get("members", {}))
        members = {p: reported.get(p, "unknown") for p in value["members"]}
        healthy = sum(1 for s in members.values() if s == "healthy")
        return {**value, "status": {"members": members, "healthy_members": healthy}}

    # Writing --------------------------------------------------------------------

    def create(self, payload: Any) -> JSON:
        body: AnycastCreate = _parse(AnycastCreate, payload)
        subnet = self.subnets.get(body.subnet_id, Context())  # 404 SubnetNotFound
        members = self._check_members(body.members, subnet)
        requested = self._check_address(body.address, subnet)
        stamp = now()
        value: JSON = {
            "id": new_id(),
            "name": body.name,
            "subnet_id": subnet["id"],
            "network_id": subnet["network_id"],
            "ip_version": subnet["ip_version"],
            "address": "",
            "members": members,
            "health_check": body.health_check.model_dump() if body.health_check else None,
            "created_at": stamp,
            "updated_at": stamp,
            "revision_number": 0,
        }
        ipam = self.ipam
        net_kv = self.networks.read(subnet["network_id"])
        for _ in range(CLAIM_ATTEMPTS):
            address = requested or ipam.pick(subnet)
            if address is None:
                raise conflict(
                    "IpAddressGenerationFailure",
                    f"No more IP addresses available on subnet {subnet['id']}.",
                )
            value["address"] = address
            claim = {"anycast_id": value["id"], "subnet_id": subnet["id"], "ip_address": address}
            try:
                self.store.txn(
                    [
                        *claim_guard(net_kv),
                        Create(keys.ipam_key(subnet["id"], address), claim),
                        Create(keys.anycast_key(value["id"]), value),
                    ]
                )
            except (RevisionMismatchError, KeyNotFoundError):
                # The network changed (its subnets): is ours still there?
                self.subnets.get(subnet["id"], Context())  # 404 SubnetNotFound
                net_kv = self.networks.read(subnet["network_id"])
                continue
            except KeyExistsError:
                if requested:
                    raise conflict(
                        "IpAddressAlreadyAllocated",
                        f"IP address {address} already allocated in subnet {subnet['id']}",
                    ) from None
                ipam.collided(subnet["id"], address)
                continue
            if requested:
                ipam.claimed(subnet["id"], address)
            return self._view(value, [])
        raise conflict(
            "IpAddressGenerationFailure",
            f"Could not reserve an address on subnet {subnet['id']}: too much contention;"
            " try again.",
        )

    def update(self, anycast_id: str, payload: Any) -> JSON:
        payload = _unwrap(payload)
        if isinstance(payload, dict):
            frozen = sorted(READ_ONLY & set(payload))
            if frozen:
                raise bad_request(f"Cannot update read-only attribute(s): {', '.join(frozen)}")
        body: AnycastUpdate = _parse(AnycastUpdate, payload)
        sent = body.model_fields_set

        def change(old: JSON) -> JSON:
            changes: JSON = {}
            if "name" in sent and body.name is not None:
                changes["name"] = body.name
            if "members" in sent:
                if body.members is None:
                    raise bad_request("members must be a list of port ids (may be empty)")
                changes["members"] = self._check_members(body.members, self._subnet(old))
            if "health_check" in sent:
                hc = body.health_check
                changes["health_check"] = hc.model_dump() if hc else None
            return changes

        return self._modify(anycast_id, change)

    def add_member(self, anycast_id: str, payload: Any) -> JSON:
        port_id = _port_id(payload)

        def change(old: JSON) -> JSON:
            if port_id in old["members"]:
                return {}
            self._check_members([port_id], self._subnet(old))
            return {"members": [*old["members"], port_id]}

        return self._modify(anycast_id, change)

    def remove_member(self, anycast_id: str, port_id: str) -> JSON:
        def change(old: JSON) -> JSON:
            if port_id not in old["members"]:
                raise not_found(
                    "AnycastMemberNotFound",
                    f"Port {port_id} is not a member of anycast group {anycast_id}.",
                )
            return {"members": [p for p in old["members"] if p != port_id]}

        return self._modify(anycast_id, change)

    def delete(self, anycast_id: str) -> None:
        for _ in range(WRITE_ATTEMPTS):
            kv = self._read(anycast_id)
            subnet_id, address = kv.value["subnet_id"], kv.value["address"]
            ops = [Delete(kv.key, kv.mod_revision)]
            claim = self.store.get(keys.ipam_key(subnet_id, address))
            if claim is not None and claim.value.get("anycast_id") == anycast_id:
                ops.append(Delete(claim.key, claim.mod_revision))
            statuses, _ = self.store.range(f"{STATUS_PREFIX}{anycast_id}/")
            ops += [Delete(s.key) for s in statuses]
            try:
                self.store.txn(ops)
            except (RevisionMismatchError, KeyNotFoundError):
                continue  # changed meanwhile: read again
            self.ipam.released(subnet_id, address)
            return
        raise busy("Anycast group", anycast_id)

    def report_status(self, anycast_id: str, payload: Any, as_host: str | None = None) -> JSON:
        """A host agent's health verdicts on its local members (never wakes a watch).

        ``as_host``: the reporting agent's host, when an agent reports (not an
        admin): it may report only as itself, on members bound to it."""
        report: StatusReport = _parse(StatusReport, payload)
        if as_host is not None and report.host != as_host:
            raise forbidden(f"host {as_host} may report anycast status only as itself.")
        group = self._read(anycast_id).value
        strangers = sorted(set(report.members) - set(group["members"]))
        if strangers:
            raise bad_request(
                f"Port(s) {', '.join(strangers)} are not members of anycast group {anycast_id}."
            )
        if as_host is not None:
            self._check_bound(report.members, as_host)
        self.store.put(
            f"{STATUS_PREFIX}{anycast_id}/{report.host}",
            {"members": report.members, "reported_at": time.time()},
        )
        return self.get(anycast_id)

    def _check_bound(self, port_ids: Iterable[str], host: str) -> None:
        """403 unless every port is bound to ``host``."""
        foreign = sorted(
            p
            for p in port_ids
            if (kv := self.ports.store.get(self.ports.key(p))) is None
            or kv.value.get("binding:host_id") != host
        )
        if foreign:
            raise forbidden(f"Port(s) {', '.join(foreign)} are not bound to host {host}.")

    def _modify(self, anycast_id: str, change: Callable[[JSON], JSON]) -> JSON:
        """Apply ``change`` (the attributes to set; empty for none) on the one write path."""

        def plan(old: JSON) -> tuple[JSON, list[Op]] | None:
            changes = change(old)
            return (changes, []) if changes else None

        key = self._read(anycast_id).key  # 404 for an unknown (or malformed) id
        try:
            revise(self.store, key, plan)
        except KeyNotFoundError:
            raise _missing(anycast_id) from None
        except Contended:
            raise busy("Anycast group", anycast_id) from None
        return self.get(anycast_id)

    # Checks ---------------------------------------------------------------------

    def _subnet(self, group: JSON) -> JSON:
        return self.subnets.get(group["subnet_id"], Context())

    def _check_members(self, members: list[str], subnet: JSON) -> list[str]:
        """Members are existing ports (404) on the subnet's network (400), each once."""
        seen: set[str] = set()
        for port_id in members:
            if port_id in seen:
                raise bad_request(f"Port {port_id} is listed twice in members.")
            seen.add(port_id)
            port = self.ports.get(port_id, Context())  # 404 PortNotFound
            if port["network_id"] != subnet["network_id"]:
                raise bad_request(
                    f"Port {port_id} is on network {port['network_id']}, not on the anycast"
                    f" subnet's network {subnet['network_id']}."
                )
        return list(members)

    @staticmethod
    def _check_address(address: str | None, subnet: JSON) -> str | None:
        if address is None:
            return None
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise bad_request(f"Invalid anycast address {address!r}.") from None
        if not usable(ipaddress.ip_network(subnet["cidr"]), ip):
            raise bad_request(
                f"IP address {address} is not a valid IP for subnet {subnet['id']}"
                f" ({subnet['cidr']}).",
                "InvalidIpForSubnet",
            )
        if str(ip) == subnet.get("gateway_ip"):
            raise conflict(
                "IpAddressAlreadyAllocated",
                f"IP address {address} is the gateway of subnet {subnet['id']}",
            )
        return str(ip)


def _port_id(payload: Any) -> str:
    if not isinstance(payload, dict) or not isinstance(payload.get("port_id"), str):
        raise bad_request('Send {"port_id": "PORT_ID"} to add a member.')
    extra = sorted(set(payload) - {"port_id"})
    if extra:
        raise bad_request(f"Unrecognized attribute(s) '{', '.join(extra)}'")
    return payload["port_id"]


# Membership lookups used by the port service and the watch -----------------------


def groups_with(store: Store, port_ids: set[str]) -> list[JSON]:
    """The anycast groups with a member among ``port_ids``."""
    kvs, _ = store.range(keys.ANYCAST)
    return [kv.value for kv in kvs if port_ids.intersection(kv.value.get("members", ()))]


def ensure_not_member(store: Store, port_id: str) -> None:
    """409 when ``port_id`` is an anycast member (see the module docstring for why)."""
    groups = groups_with(store, {port_id})
    if groups:
        names = ", ".join(f"{g['name']} ({g['id']})" for g in groups)
        raise conflict(
            "PortInUse",
            f"Port {port_id} is a member of anycast group(s) {names}; remove it from them"
            " first (l3fabric anycast remove-member GROUP PORT).",
        )
