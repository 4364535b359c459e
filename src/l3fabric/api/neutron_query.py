"""List queries of the Neutron API: filters, ``fields``, sorting and pagination.

Filters are any top-level attribute (AND across keys, OR across repeated
values; see ``service.common.make_filter``). The other parameters are
Neutron's: ``fields`` (repeatable), ``sort_key``/``sort_dir`` (repeatable,
paired), ``limit`` and ``marker`` (an id), ``page_reverse``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from l3fabric.api.errors import bad_request


@dataclass
class ListQuery:
    filters: dict[str, list[str]] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (key, descending)
    limit: int | None = None
    marker: str | None = None
    reverse: bool = False

    @classmethod
    def parse(cls, items: list[tuple[str, str]]) -> ListQuery:
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
                if not value.isdigit():
                    raise bad_request(
                        f"Invalid input: limit must be a non-negative integer, not {value!r}"
                    )
                query.limit = int(value) or None
            elif key == "marker":
                query.marker = value
            elif key == "page_reverse":
                query.reverse = value.lower() == "true"
            else:
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
