"""Property-based fuzzing of every endpoint of both APIs from /openapi.json (schemathesis).

The routes document their real request bodies (the pydantic models), so the
fuzzer sends valid bodies as well as invalid ones (schemathesis' positive and
negative modes), plus odd path, query and header values. Every answer must be
valid JSON, never a 5xx, and every error a Neutron error body.

Reproducible and sized for CI (about 20-30 s: ``FUZZ_EXAMPLES`` examples per
operation, derandomized). A longer local run: ``L3F_FUZZ_EXAMPLES=500 pytest
tests/unit/test_api_fuzz.py``; ``L3F_FUZZ_RANDOM=1`` draws new examples each run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from l3fabric.api.app import create_app
from l3fabric.store.sqlite import SqliteStore

FUZZ_EXAMPLES = int(os.environ.get("L3F_FUZZ_EXAMPLES", "20"))
FUZZ_RANDOM = bool(os.environ.get("L3F_FUZZ_RANDOM"))


# The schema is read at collection, so the app (over an in-memory store) exists at import.
_STORE = SqliteStore(":memory:")
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_STORE))


@pytest.fixture(scope="module", autouse=True)
def _close_store() -> Iterator[None]:
    yield
    _STORE.close()


def _strict_json(raw: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in a response: not JSON")

    return json.loads(raw.decode("utf-8"), parse_constant=refuse)


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    derandomize=not FUZZ_RANDOM,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_endpoint_answers_5xx_or_invalid_json(case: Any) -> None:
    # Long polls would only wait: the fuzzer gets a watch that answers at once.
    if case.path == "/v1/watch" and isinstance(case.query, dict):
        case.query["timeout"] = 0
    response = case.call()
    where = f"{case.method} {case.formatted_path} {case.query!r}: {response.text[:300]}"
    assert response.status_code < 500, where
    if response.status_code == 204:
        return
    assert response.headers.get("content-type", [""])[0].startswith("application/json"), where
    body = _strict_json(response.content)
    if response.status_code >= 400:
        assert isinstance(body, dict) and set(body) == {"NeutronError"}, where
        assert set(body["NeutronError"]) == {"type", "message", "detail"}, where
