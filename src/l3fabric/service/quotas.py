"""Per-project quotas with Neutron's defaults and its quotas API
(``/v2.0/quotas``): admins set them, everyone may read their own.

A create counts the project's objects and refuses the one over the limit
(409 ``OverQuota``). The counts are kept per collection from the store's
history (one full count, then only the changes since), so a check costs the
changes since the last one, not a scan of every port. Counting and creating
are not one transaction, so N creates racing in one project may end at most
N-1 over the limit (docs/api.md); a quota bounds use, it guards nothing else.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from typing import Any

from l3fabric.keys import QUOTAS, neutron_prefix, quota_key
from l3fabric.service.common import JSON, WRITE_ATTEMPTS, Context, busy
from l3fabric.service.errors import bad_request, conflict, not_allowed
from l3fabric.store import (
    CompactedError,
    Create,
    KeyExistsError,
    KeyNotFoundError,
    RevisionMismatchError,
    Store,
    Update,
)

# Neutron's defaults (neutron/conf/quota.py); -1 is unlimited.
DEFAULTS: dict[str, int] = {
    "network": 100,
    "subnet": 100,
    "port": 500,
    "router": 10,
    "floatingip": 50,
    "security_group": 10,
    "security_group_rule": 100,
}

# Each quota's stored collection.
COLLECTIONS = {
    "network": "networks",
    "subnet": "subnets",
    "port": "ports",
    "router": "routers",
    "floatingip": "floatingips",
    "security_group": "security-groups",
    "security_group_rule": "security-group-rules",
}


class _Usage:
    """Objects per project under one store prefix, kept current from its history."""

    def __init__(self, store: Store, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self.counts: Counter[str] = Counter()
        self.revision: int | None = None  # None: count from scratch
        self.lock = threading.Lock()

    def of(self, project_id: str) -> int:
        with self.lock:
            self._refresh()
            return self.counts[project_id]

    def _refresh(self) -> None:
        if self.revision is not None:
            try:
                events, seen = self.store.watch(self.prefix, self.revision, 0)
            except CompactedError:
                self.revision = None
            else:
                for event in events:
                    if event.type == "delete" and event.prev_value is not None:
                        self.counts[event.prev_value.get("project_id")] -= 1
                    elif event.type == "put" and event.prev_value is None and event.value:
                        self.counts[event.value.get("project_id")] += 1
                self.revision = seen
                return
        kvs, revision = self.store.range(self.prefix)
        self.counts = Counter(kv.value.get("project_id") for kv in kvs)
        self.revision = revision


class Quotas:
    """Limits per project: the stored ones over ``DEFAULTS``."""

    def __init__(self, store: Store, defaults: dict[str, int] | None = None) -> None:
        self.store = store
        self.defaults = {**DEFAULTS, **(defaults or {})}
        self.usage = {r: _Usage(store, neutron_prefix(c)) for r, c in COLLECTIONS.items()}

    def limits(self, project_id: str) -> dict[str, int]:
        kv = self.store.get(quota_key(project_id))
        return {**self.defaults, **(kv.value if kv is not None else {})}

    def used(self, resource: str, project_id: str) -> int:
        return self.usage[resource].of(project_id)

    def check(self, resource: str, project_id: str) -> None:
        """409 OverQuota unless ``project_id`` has room for one more ``resource``."""
        limit = self.limits(project_id)[resource]
        if limit >= 0 and self.used(resource, project_id) >= limit:
            raise conflict("OverQuota", f"Quota exceeded for resources: ['{resource}'].")

    # The quotas API ------------------------------------------------------------

    def show(self, project_id: str, ctx: Context) -> JSON:
        _readable(project_id, ctx)
        return {"quota": self.limits(project_id)}

    def default(self, project_id: str, ctx: Context) -> JSON:
        _readable(project_id, ctx)
        return {"quota": dict(self.defaults)}

    def details(self, project_id: str, ctx: Context) -> JSON:
        _readable(project_id, ctx)
        return {
            "quota": {
                resource: {"limit": limit, "used": self.used(resource, project_id), "reserved": 0}
                for resource, limit in self.limits(project_id).items()
            }
        }

    def list(self, ctx: Context) -> JSON:
        """Every project with limits of its own (as Neutron lists them)."""
        if not ctx.is_admin:
            raise not_allowed("get_quota")
        kvs, _ = self.store.range(QUOTAS)
        return {
            "quotas": [
                {**self.defaults, **kv.value, "project_id": p, "tenant_id": p}
                for kv in kvs
                for p in [kv.key.removeprefix(QUOTAS)]
            ]
        }

    def update(self, project_id: str, data: Any, ctx: Context) -> JSON:
        if not ctx.is_admin:
            raise not_allowed("update_quota")
        changes = _parse(data)
        key = quota_key(project_id)
        for _ in range(WRITE_ATTEMPTS):
            kv = self.store.get(key)
            stored = {**(kv.value if kv is not None else {}), **changes}
            # Guarded, so two admins' changes to different resources both stay.
            op = Create(key, stored) if kv is None else Update(key, stored, kv.mod_revision)
            try:
                self.store.txn([op])
            except (KeyExistsError, KeyNotFoundError, RevisionMismatchError):
                continue
            return {"quota": {**self.defaults, **stored}}
        raise busy("Quota of project", project_id)

    def reset(self, project_id: str, ctx: Context) -> None:
        if not ctx.is_admin:
            raise not_allowed("delete_quota")
        with contextlib.suppress(KeyNotFoundError):
            self.store.delete(quota_key(project_id))


def _readable(project_id: str, ctx: Context) -> None:
    if project_id != ctx.project_id and not ctx.is_admin:
        raise not_allowed("get_quota")


def _parse(data: Any) -> dict[str, int]:
    """``{"quota": {"port": 1000, ...}}``: known resources, integers >= -1."""
    if not isinstance(data, dict) or not isinstance(data.get("quota"), dict):
        raise bad_request("Unable to find 'quota' in request body", "MalformedRequestBody")
    changes: dict[str, int] = {}
    for resource, value in data["quota"].items():
        if resource not in DEFAULTS:
            raise bad_request(f"Unrecognized attribute(s) '{resource}'")
        if isinstance(value, str) and value.lstrip("-").isdecimal() and value.isascii():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value < 2**31:
            raise bad_request(
                f"Invalid input for {resource}. Reason: '{value}' is not an integer of -1 or more."
            )
        changes[resource] = value
    return changes
