"""What every Neutron resource service shares: validation into Neutron errors,
standard attributes (ids, project, timestamps, revision_number), reads,
filters, and the optimistic update loop over the store.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from pydantic import ValidationError

from l3fabric.keys import neutron_key, neutron_prefix
from l3fabric.model.neutron import Body
from l3fabric.service import policy
from l3fabric.service.errors import (
    Conflict,
    NotFound,
    PreconditionFailed,
    bad_request,
    conflict,
    not_allowed,
    not_found,
)
from l3fabric.store import (
    Delete,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    Op,
    RevisionMismatchError,
    Store,
    Update,
)

JSON = dict[str, Any]

# Optimistic writes retry when another writer got in between; this bounds it.
WRITE_ATTEMPTS = 20

# The project of requests that name none (there is no Keystone).
DEFAULT_PROJECT = "default"

M = TypeVar("M", bound=Body)


@dataclass(frozen=True, slots=True)
class Context:
    """Who is asking, as the API layer established it (transport-free).

    ``roles`` are Keystone-style role names (``admin``, ``member``, ``reader``)
    or an agent's own role (``host:NAME``, ``gateway:NAME``). Without
    authentication (``--auth none``) every request is an admin acting for the
    project it names (X-Project-Id), as Neutron's noauth mode does.
    """

    project_id: str = DEFAULT_PROJECT
    roles: frozenset[str] = frozenset({"admin"})
    user_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


def now() -> str:
    """A timestamp in Neutron's format, e.g. 2026-11-27T09:00:00Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id() -> str:
    return str(uuid.uuid4())


def validate(model: type[M], data: Any, *, create: bool) -> M:
    """Parse a request body into ``model`` or raise a 400 that names the field."""
    if not isinstance(data, dict):
        raise bad_request(f"the body must be a JSON object, got {type(data).__name__}")
    try:
        body = model.model_validate(data)
    except ValidationError as exc:
        raise bad_request(_explain(exc)) from None
    sent = set(data)
    if create:
        missing = sorted(model.REQUIRED - sent)
        if missing:
            raise bad_request(f"Missing required attribute(s): {', '.join(missing)}")
    else:
        frozen = sorted(model.CREATE_ONLY & sent)
        if frozen:
            raise bad_request(f"Cannot update read-only attribute(s): {', '.join(frozen)}")
    return body


def _explain(exc: ValidationError) -> str:
    unknown = [str(e["loc"][-1]) for e in exc.errors() if e["type"] == "extra_forbidden"]
    if unknown and len(unknown) == len(exc.errors()):
        return f"Unrecognized attribute(s) '{', '.join(unknown)}'"
    reasons = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        msg = err["msg"].removeprefix("Value error, ")
        reasons.append(f"Invalid input for {where}. Reason: {msg}.")
    return " ".join(reasons)


def standard_attrs(attrs: JSON, ctx: Context) -> JSON:
    """id, project, timestamps and revision of a new resource."""
    if (
        attrs.get("project_id")
        and attrs.get("tenant_id")
        and attrs["project_id"] != attrs["tenant_id"]
    ):
        raise bad_request("project_id and tenant_id differ; give one of them")
    project = policy.requested_project(attrs, ctx)
    stamp = now()
    return {
        "id": new_id(),
        "project_id": project,
        "tenant_id": project,
        "created_at": stamp,
        "updated_at": stamp,
        "revision_number": 0,
    }


def bumped(old: JSON, changes: JSON) -> JSON:
    """``old`` with ``changes`` applied, as the next revision."""
    new = {**old, **changes}
    new["revision_number"] = old.get("revision_number", 0) + 1
    new["updated_at"] = now()
    return new


# Filters --------------------------------------------------------------------

_TRUE = {"true": True, "false": False}
# ASCII digits only: str.isdigit() also takes '²' and other scripts' digits, which int() refuses.
_INT = re.compile(r"-?[0-9]{1,18}")


def _matches(stored: Any, wanted: list[str]) -> bool:
    if isinstance(stored, bool):
        return any(_TRUE.get(w.lower()) is stored for w in wanted)
    if isinstance(stored, int):
        return any(_INT.fullmatch(w) is not None and int(w) == stored for w in wanted)
    if stored is None:
        return any(w in ("", "None", "null") for w in wanted)
    if isinstance(stored, list):
        return any(_matches(item, wanted) for item in stored)
    if isinstance(stored, dict):
        # e.g. fixed_ips=ip_address=10.0.0.5 against {"subnet_id", "ip_address"}
        for w in wanted:
            key, sep, value = w.partition("=")
            if sep and key in stored and str(stored[key]) == value:
                return True
        return False
    return str(stored) in wanted


def make_filter(filters: dict[str, list[str]]) -> Callable[[JSON], bool]:
    """AND across keys, OR across the values of one key (Neutron's semantics)."""
    items = list(filters.items())

    def accept(obj: JSON) -> bool:
        return all(key in obj and _matches(obj[key], wanted) for key, wanted in items)

    return accept


class Collection:
    """Reads of one stored Neutron collection, with its 404.

    What a service needs of another collection when it only reads it: so it
    depends on the store, not on that collection's service and collaborators.
    """

    collection: str  # URL and store name, e.g. "security-groups"
    not_found_type: str
    label: str  # for messages, e.g. "Security group"

    def __init__(self, store: Store) -> None:
        self.store = store

    @classmethod
    def reader(cls, store: Store) -> Collection:
        """The reads of ``cls``'s collection alone (no collaborators needed)."""
        reader = Collection(store)
        reader.collection = cls.collection
        reader.not_found_type = cls.not_found_type
        reader.label = cls.label
        return reader

    def key(self, object_id: str) -> str:
        return neutron_key(self.collection, object_id)

    def missing(self, object_id: str) -> NotFound:
        return not_found(self.not_found_type, f"{self.label} {object_id} could not be found.")

    def read(self, object_id: str) -> KeyValue:
        kv = self.store.get(self.key(object_id)) if "/" not in object_id else None
        if kv is None:
            raise self.missing(object_id)
        return kv

    def visibility(self, ctx: Context) -> Callable[[JSON], bool]:
        """Which objects ``ctx`` may see (Neutron's get_* policy): by default
        its project's, or all for an admin."""
        return lambda obj: policy.owns(ctx, obj)

    def view(self, obj: JSON, ctx: Context) -> JSON:
        """``obj`` as ``ctx`` may see it (subclasses hide admin-only fields)."""
        return obj

    def get(self, object_id: str, ctx: Context) -> JSON:
        """The object if ``ctx`` may see it; another project's is a 404, as in Neutron."""
        value = self.read(object_id).value
        if not self.visibility(ctx)(value):
            raise self.missing(object_id)
        return self.view(value, ctx)

    def authorize(self, object_id: str, ctx: Context, action: str) -> JSON:
        """The object ``ctx`` is about to change: 404 if it may not see it,
        403 if it sees it but is not its project's (a shared network)."""
        value = self.read(object_id).value
        if not self.visibility(ctx)(value):
            raise self.missing(object_id)
        policy.check_writer(ctx, action)
        if not policy.owns(ctx, value):
            raise not_allowed(action)
        return value

    def list(self, ctx: Context, filters: dict[str, list[str]] | None = None) -> list[JSON]:
        kvs, _ = self.store.range(neutron_prefix(self.collection))
        # Visibility first: a filter (fixed_ips=ip_address=..., device_id=...)
        # must not tell a member anything about what it may not see.
        visible = self.visibility(ctx)
        accept = make_filter(filters) if filters else lambda obj: True
        return [self.view(kv.value, ctx) for kv in kvs if visible(kv.value) and accept(kv.value)]


class Resource(Collection):
    """One Neutron collection's service. Subclasses add create/update/delete and
    take, besides the store, only the collaborators they use."""

    singular: ClassVar[str]  # body key, e.g. "security_group"
    plural: ClassVar[str]  # list body key, e.g. "security_groups"
    model: ClassVar[type[Body]]

    def current(self, object_id: str, if_match: int | None) -> KeyValue:
        """The object as read for a write: 412 unless it is at revision ``if_match``.

        The write must be guarded by this read's mod_revision, so the check
        and the write are one store transaction."""
        kv = self.read(object_id)
        check_revision(kv.value, if_match)
        return kv

    # Raises OverQuota when the project has no room for one more (NeutronService
    # wires its Quotas here; a service on its own has no limits).
    quota: Callable[[str, str], None] = staticmethod(lambda resource, project: None)

    def new_attrs(self, attrs: JSON, ctx: Context) -> JSON:
        """``standard_attrs`` of a new object, within its project's quota."""
        policy.check_writer(ctx, f"create_{self.singular}")
        value = standard_attrs(attrs, ctx)
        self.quota(self.singular, value["project_id"])
        return value

    def create(self, data: Any, ctx: Context) -> JSON:
        raise NotImplementedError

    def update(self, object_id: str, data: Any, ctx: Context, if_match: int | None) -> JSON:
        self.authorize(object_id, ctx, f"update_{self.singular}")
        body = validate(self.model, data, create=False)
        attrs = body.api_attrs()
        policy.check_admin_only(ctx, f"update_{self.singular}", attrs)
        return self.modify(object_id, lambda old: (self.changes(old, attrs), []), if_match)

    def changes(self, old: JSON, attrs: JSON) -> JSON:
        """The stored attributes an update changes; subclasses check semantics."""
        return attrs

    def modify(
        self,
        object_id: str,
        plan: Callable[[JSON], Plan],
        if_match: int | None = None,
        *,
        attempts: int = WRITE_ATTEMPTS,
        on_taken: Callable[[KeyExistsError], None] | None = None,
    ) -> JSON:
        """``revise`` this object: 404 when it is gone, 409 when it stays contended."""
        if "/" in object_id:
            raise self.missing(object_id)
        try:
            new = revise(
                self.store,
                self.key(object_id),
                plan,
                if_match=if_match,
                attempts=attempts,
                on_taken=on_taken,
            )
        except KeyNotFoundError:
            raise self.missing(object_id) from None
        except Contended:
            raise busy(self.label, object_id) from None
        assert new is not None  # plan always returns changes
        return new

    def remove(
        self,
        object_id: str,
        if_match: int | None,
        plan: Callable[[KeyValue], Sequence[Op]] = lambda kv: (),
    ) -> KeyValue:
        """Delete this object and ``plan``'s ops (its cascade, its checks) in one
        transaction guarded by the mod_revision that passed If-Match; plan again
        when anything the transaction compares changed. Returns what was deleted."""
        for _ in range(WRITE_ATTEMPTS):
            kv = self.current(object_id, if_match)
            ops = plan(kv)
            try:
                self.store.txn([Delete(kv.key, kv.mod_revision), *ops])
            except (RevisionMismatchError, KeyNotFoundError):
                continue  # a concurrent write: read again (404/412 if it was this object)
            return kv
        raise busy(self.label, object_id)

    def delete(self, object_id: str, ctx: Context, if_match: int | None = None) -> None:
        raise NotImplementedError


# The changed attributes and the extra ops of one write, or None for no write.
Plan = tuple[JSON, Sequence[Op]] | None


class Contended(Exception):
    """``revise`` lost the race ``attempts`` times in a row."""


def check_revision(value: JSON, if_match: int | None) -> None:
    """412 unless ``value`` is at revision ``if_match`` (Neutron's If-Match)."""
    if if_match is not None and value.get("revision_number") != if_match:
        raise PreconditionFailed(
            "RevisionNumberConstraintFailed",
            f"Constrained to {if_match}, but current revision is {value.get('revision_number')}",
        )


def revise(
    store: Store,
    key: str,
    plan: Callable[[JSON], Plan],
    *,
    if_match: int | None = None,
    attempts: int = WRITE_ATTEMPTS,
    on_taken: Callable[[KeyExistsError], None] | None = None,
) -> JSON | None:
    """The one way a stored Neutron object changes (API updates, agents' status).

    Reads the object, checks If-Match on that read, lets ``plan`` give the
    changed attributes and extra ops, and writes the next revision (``bumped``)
    guarded by the mod_revision it read, in one transaction with the ops. When
    anything the transaction compares changed meanwhile, it plans again from a
    fresh read; a lost Create goes to ``on_taken`` (which raises, or lets it
    plan again). Returns the new value, or None when ``plan`` says there is
    nothing to write. Raises KeyNotFoundError when the object is gone and
    Contended after ``attempts`` lost races.
    """
    for _ in range(attempts):
        kv = store.get(key)
        if kv is None:
            raise KeyNotFoundError(key)
        check_revision(kv.value, if_match)
        planned = plan(kv.value)
        if planned is None:
            return None
        changes, ops = planned
        new = bumped(kv.value, changes)
        try:
            store.txn([Update(key, new, kv.mod_revision), *ops])
        except KeyExistsError as exc:
            if on_taken is None:
                raise
            on_taken(exc)
        except (RevisionMismatchError, KeyNotFoundError):
            pass  # the object, or a key the ops compare, changed: plan again
        else:
            return new
    raise Contended(key)


def busy(label: str, object_id: str) -> Conflict:
    return conflict("Conflict", f"{label} {object_id} is being changed concurrently; try again.")


def ids(objects: Iterable[JSON]) -> list[str]:
    return [o["id"] for o in objects]
