"""JSON in: the one request body parser of both APIs (/v2.0 and /v1).

Strict JSON, so that nothing stored can later fail a read or a watch:

- UTF-8 only, and no lone UTF-16 surrogate anywhere, key or value (JSON's
  ``"\\ud800"`` escape decodes to one; it cannot be written out as UTF-8);
- no ``NaN``, ``Infinity`` or a number that overflows to infinity (not JSON;
  Python's json accepts them);
- at most ``MAX_DEPTH`` nested arrays and objects (the deepest real body,
  an anycast heartbeat, has 5; Python's parser would fail at ~1000 and
  pydantic's serialiser well before).

Anything else is a 400 ``MalformedRequestBody`` in Neutron's error body.
The body size limit is the server's (``l3fabric.server``).
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel

from l3fabric.api.jsontext import LONE_SURROGATE
from l3fabric.service.errors import bad_request

MAX_DEPTH = 32


class InvalidJson(ValueError):
    """The body is not strict JSON (see the module docstring)."""


def _refuse_constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidJson(f"the number {text[:40]} is out of range")
    return value


def parse_json(raw: bytes) -> Any:
    """Decode a request body strictly; raises InvalidJson with a message safe to echo."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJson(f"the body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise InvalidJson(f"nested deeper than {MAX_DEPTH} levels") from None
    except InvalidJson:
        raise
    except ValueError as exc:
        # json's messages name a position; they never echo the text.
        raise InvalidJson(str(exc)) from None
    _check(value)
    return value


def _check(value: Any) -> None:
    """Depth and lone surrogates, without recursion (the value may be ~1000 deep)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise InvalidJson(f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key in item:
                    _check_text(key)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)


def _check_text(text: str) -> None:
    if not text.isascii() and LONE_SURROGATE.search(text):
        raise InvalidJson("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff), not text")


async def read_json(request: Request) -> Any:
    """The request's JSON body, or a 400 MalformedRequestBody."""
    return decode_body(await request.body())


def decode_body(raw: bytes) -> Any:
    """A request body as JSON, or a 400 MalformedRequestBody."""
    if not raw.strip():
        raise bad_request("The request body is empty; send a JSON object.", "MalformedRequestBody")
    try:
        return parse_json(raw)
    except InvalidJson as exc:
        raise bad_request(f"Malformed request body: {exc}", "MalformedRequestBody") from None


# A /v1 route parameter: the body, parsed by ``read_json`` (not by FastAPI, so
# that both APIs refuse the same things with the same error body).
JsonBody = Annotated[Any, Depends(read_json)]


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its definitions inlined, to stand anywhere in /openapi.json."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)


def openapi_body(schema: type[BaseModel] | dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` that documents a route's JSON body (routes parse bodies themselves)."""
    if isinstance(schema, type):
        schema = model_schema(schema)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
