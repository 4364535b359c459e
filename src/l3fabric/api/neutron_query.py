"""List queries of the Neutron API: filters, ``fields``, sorting and pagination.

Filters are any top-level attribute (AND across keys, OR across repeated
values; see ``service.common.make_filter``). The other parameters are
Neutron's: ``fields`` (repeatable), ``sort_key``/``sort_dir`` (repeatable,
paired), ``limit`` and ``marker`` (an id), ``page_reverse``.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import BaseModel

from l3fabric.service.errors import bad_request

# An integer in a query or header: ASCII digits only (str.isdigit() and int()
# also take other scripts' digits, and int() a 5,000-digit string is an
# error), at most an int64.
_INT = re.compile(r"-?[0-9]{1,18}")
# How a filter asks for an attribute that is null (see service.common).
_NULLS = ("", "None", "null")


def parse_int(name: str, value: str, *, minimum: int | None = None) -> int:
    """``value`` as an integer, or a 400 that says what ``name`` must be."""
    if _INT.fullmatch(value) is None or (minimum is not None and int(value) < minimum):
        wanted = "an integer" if minimum is None else f"an integer of at least {minimum}"
        raise bad_request(f"Invalid input for {name}: {value[:40]!r} is not {wanted}")
    return int(value)


def int_attributes(model: type[BaseModel]) -> frozenset[str]:
    """The attributes of a resource that are integers, by their API names."""
    names = {"revision_number"}  # a standard attribute, not in the request models
    for name, info in model.model_fields.items():
        if _is_int(info.annotation):
            names.add(info.alias or name)
    return frozenset(names)


def _is_int(annotation: Any) -> bool:
    if annotation is int:
        return True
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is Literal:
        return all(type(a) is int for a in args)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kinds = set(args) - {type(None)}
        return bool(kinds) and all(_is_int(k) for k in kinds)
    return False


@dataclass
class ListQuery:
    filters: dict[str, list[str]] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (key, descending)
    limit: int | None = None
    marker: str | None = None
    reverse: bool = False

    @classmethod
    def parse(
        cls, items: list[tuple[str, str]], int_fields: frozenset[str] = frozenset()
    ) -> ListQuery:
        """The query of ``items``; filters on ``int_fields`` must be integers (else 400)."""
        query = cls()
        sort_keys: list[str] = []
        sort_dirs: list[str] = []
        for key, value in items:
            if key == "fields":
                query.fields.extend(v for v in value.split(",") if v)
            elif key == "sort_key":
                sort_keys.append(value)
            elif key == "sort_dir":
                if value not in ("asc", "desc"):
                    raise bad_request(f"Invalid input: sort_dir must be asc or desc, not {value!r}")
                sort_dirs.append(value)
            elif key == "limit":
                query.limit = parse_int("limit", value, minimum=0) or None
            elif key == "marker":
                query.marker = value
            elif key == "page_reverse":
                query.reverse = value.lower() == "true"
            else:
                if key in int_fields and value not in _NULLS:
                    parse_int(key, value)
                query.filters.setdefault(key, []).append(value)
        if sort_dirs and len(sort_dirs) != len(sort_keys):
            raise bad_request("Invalid input: give one sort_dir per sort_key, or none")
        query.sort = [
            (k, (sort_dirs[i] if sort_dirs else "asc") == "desc") for i, k in enumerate(sort_keys)
        ]
        return query

    def apply(self, objects: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
        """Sort and page ``objects`` (already filtered); returns the page and the
        marker of the next page, if there is one."""
        for key, descending in reversed(self.sort):
            # Stable sorts from the last key to the first give a multi-key sort;
            # None sorts first, and mixed types compare by their text.
            objects = sorted(
                objects,
                key=lambda o, k=key: (o.get(k) is not None, str(o.get(k, ""))),
                reverse=descending,
            )
        if self.reverse:
            objects = objects[::-1]
        if self.marker is not None:
            position = next((i for i, o in enumerate(objects) if o["id"] == self.marker), None)
            if position is None:
                raise bad_request(f"Invalid input: marker {self.marker} is not in this list")
            objects = objects[position + 1 :]
        next_marker = None
        if self.limit is not None and len(objects) > self.limit:
            objects = objects[: self.limit]
            next_marker = objects[-1]["id"]
        if self.fields:
            wanted = self.fields
            objects = [{f: o[f] for f in wanted if f in o} for o in objects]
        return objects, next_marker

    def next_link(self, url: str, items: list[tuple[str, str]], marker: str) -> str:
        kept = [(k, v) for k, v in items if k != "marker"]
        return f"{url}?{urlencode([*kept, ('marker', marker)])}"
