"""Small helpers for tests that talk to the API through a test client."""

from __future__ import annotations


def error(response, status: int) -> str:
    """The Neutron error type of ``response``, after checking its status and content type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["NeutronError"]["type"]


def make(client, collection: str, key: str, **attrs):
    """POST one object to /v2.0/``collection``; the created object."""
    r = client.post(f"/v2.0/{collection}", json={key: attrs})
    assert r.status_code == 201, r.text
    return r.json()[key]
