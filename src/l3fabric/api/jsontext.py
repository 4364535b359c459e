"""JSON out: every response body of both APIs is valid UTF-8 JSON, whatever is stored.

Input is checked strictly (``api.body``), but a value stored before that
(a lone UTF-16 surrogate, NaN, nesting deeper than JSON encoders manage)
must not make a read, a list or an agent's watch fail forever: such a value
is written out degraded (U+FFFD for a lone surrogate, null for a non-finite
number or a too deep branch) instead of answering 500.

``JsonRoute`` sends the /v1 routes' results through the same encoder;
FastAPI's own (pydantic) encoder fails on the values above.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import re
from collections.abc import Callable
from typing import Any

import pydantic_core
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.responses import Response

LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Deeper branches of an old stored value become null when it is written out.
_DEGRADE_DEPTH = 64


def dumps(data: Any) -> bytes:
    """Compact UTF-8 JSON of ``data``; degrades what cannot be encoded, never raises for it."""
    try:
        # pydantic-core's encoder: several times faster than json.dumps on a
        # 10,000-port snapshot; it writes NaN and infinities as null.
        return pydantic_core.to_json(data, inf_nan_mode="null")
    except ValueError:  # a lone surrogate, or nesting deeper than it goes
        return json.dumps(_degrade(data, 0), separators=(",", ":"), ensure_ascii=False).encode()


def safe_text(text: str) -> str:
    """``text`` with lone surrogates replaced, so that it can be encoded as UTF-8."""
    return LONE_SURROGATE.sub("\ufffd", text)


def _degrade(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict | list | tuple) and depth >= _DEGRADE_DEPTH:
        return None
    if isinstance(value, dict):
        return {
            (safe_text(k) if isinstance(k, str) else k): _degrade(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_degrade(v, depth + 1) for v in value]
    return value


class JsonResponse(JSONResponse):
    """A JSON response that always renders (see ``dumps``)."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


class JsonRoute(APIRoute):
    """A route whose plain (dict or list) result leaves through ``dumps``.

    The endpoint is wrapped so that it returns a ``JsonResponse`` with the
    route's status code; endpoints that return a ``Response`` themselves
    (a 204, or a status chosen at run time) pass through unchanged.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        status = kwargs.get("status_code") or 200
        kwargs["response_model"] = None
        super().__init__(path, _answer_json(endpoint, status), **kwargs)


def _answer_json(endpoint: Callable[..., Any], status: int) -> Callable[..., Any]:
    def respond(result: Any) -> Any:
        return result if isinstance(result, Response) else JsonResponse(result, status)

    # The wrapper keeps the endpoint's kind: FastAPI runs a sync one in its thread pool.
    if inspect.iscoroutinefunction(endpoint):

        @functools.wraps(endpoint)
        async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
            return respond(await endpoint(*args, **kwargs))

        return wrapped_async

    @functools.wraps(endpoint)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        return respond(endpoint(*args, **kwargs))

    return wrapped
