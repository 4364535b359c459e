"""Ports as the host agent's cache holds them, for the agent's unit tests."""

from __future__ import annotations

A = "aaaaaaaa-1111-2222-3333-444444444444"
B = "bbbbbbbb-1111-2222-3333-444444444444"
C = "cccccccc-1111-2222-3333-444444444444"
D = "dddddddd-1111-2222-3333-444444444444"


def port(pid: str, *ips: str, pairs: tuple[str, ...] = (), up: bool = True) -> dict:
    """Port ``pid`` bound to host h1 with fixed IPs ``ips`` and address pairs ``pairs``."""
    return {
        "id": pid,
        "fixed_ips": [{"subnet_id": "s", "ip_address": ip} for ip in ips],
        "allowed_address_pairs": [{"ip_address": p} for p in pairs],
        "admin_state_up": up,
        "binding:host_id": "h1",
    }
