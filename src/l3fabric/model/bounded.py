"""Size limits for free-form values the API stores (and then sends in every list and watch).

``json_bytes(limit)`` bounds the compact JSON form of a value; a larger one
is a validation error (a 400), never stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import pydantic_core
from pydantic import AfterValidator

# binding:profile, and the agents' self-descriptions and NAT counters in heartbeats.
FREE_FORM_MAX_BYTES = 16 * 1024

_T = TypeVar("_T")


def json_bytes(limit: int) -> AfterValidator:
    """A validator: the value's compact JSON is at most ``limit`` bytes."""

    def check(value: _T) -> _T:
        size = len(pydantic_core.to_json(value))
        if size > limit:
            raise ValueError(f"is {size} bytes as JSON; at most {limit} are allowed")
        return value

    checker: Callable[[Any], Any] = check
    return AfterValidator(checker)


BoundedJson = Annotated[dict[str, Any], json_bytes(FREE_FORM_MAX_BYTES)]
