"""The fabric's health as an operator reads it, from the controller's host and gateway views.

``assess(hosts, gateways, now)`` turns what ``GET /v1/hosts`` and ``GET
/v1/gateways`` answer (each node's registration with its agent's last
heartbeat) into one ``NodeHealth`` per node: heartbeat age, agent version,
BGP sessions, endpoints programmed out of expected, the last pass and the
problems found. A node with any problem makes the fabric degraded:

- its agent sent no heartbeat within the grace period (dead or cut off);
- a BGP session is not established (or was skipped: no address to use);
- fewer endpoints are programmed than its ports need;
- it programs endpoints but announces no route on any session;
- its last pass failed.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

JSON = dict[str, Any]


@dataclass
class Session:
    name: str
    peer: str
    state: str
    since: str
    routes_in: int
    routes_out: int
    rejected: int
    established: bool


@dataclass
class NodeHealth:
    kind: str  # "host" or "gateway"
    name: str
    up: bool
    heartbeat_age_s: float | None
    version: str | None
    sessions: list[Session] = field(default_factory=list)
    endpoints: JSON | None = None
    last_pass_at: float | None = None
    last_pass_s: float | None = None
    errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_json(self) -> JSON:
        data = asdict(self)
        data["healthy"] = self.healthy
        return data


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _session(raw: JSON) -> Session:
    state = str(raw.get("state", ""))
    info = str(raw.get("info", ""))
    return Session(
        name=str(raw.get("name", "")),
        peer=str(raw.get("peer", "")),
        state=info.split()[0] if info and state == "up" else state,
        since=str(raw.get("since", "")),
        routes_in=int(raw.get("routes_in", 0)),
        routes_out=int(raw.get("routes_out", 0)),
        rejected=int(raw.get("rejected", 0)),
        established=info.startswith("Established"),
    )


def node_health(kind: str, view: JSON, now: float) -> NodeHealth:
    """One node's health from its controller view (a host or gateway)."""
    agent = view.get("agent") or {}
    beat = _epoch(view.get("heartbeat_at"))
    last = agent.get("last_pass") or {}
    node = NodeHealth(
        kind=kind,
        name=view["name"],
        up=view.get("status") == "up",
        heartbeat_age_s=None if beat is None else round(max(0.0, now - beat), 1),
        version=agent.get("version"),
        sessions=[_session(s) for s in view.get("bgp", [])],
        endpoints=agent.get("endpoints"),
        last_pass_at=last.get("at"),
        last_pass_s=agent.get("last_pass_s"),
        errors=list(agent.get("errors") or []),
    )
    node.problems = _problems(node)
    return node


def _problems(node: NodeHealth) -> list[str]:
    if not node.up:
        if node.heartbeat_age_s is None:
            return ["agent never reported"]
        return [f"agent silent for {node.heartbeat_age_s:.0f} s (dead or cut off)"]
    found = []
    if not node.sessions:
        found.append("no BGP session")
    for s in node.sessions:
        if not s.established:
            found.append(f"BGP session {s.name} ({s.peer}) {s.state}")
    ends = node.endpoints or {}
    missing = int(ends.get("expected", 0)) - int(ends.get("programmed", 0))
    if missing > 0:
        found.append(f"{missing} endpoint(s) not programmed")
    if ends.get("programmed") and not any(s.routes_out for s in node.sessions if s.established):
        found.append("announces no route on any BGP session")
    if node.errors:
        found.append(f"last pass failed: {node.errors[0]}")
    return found


def assess(hosts: Iterable[JSON], gateways: Iterable[JSON], now: float) -> list[NodeHealth]:
    """Every host, then every gateway, by name."""
    nodes = [node_health("host", v, now) for v in sorted(hosts, key=lambda v: v["name"])]
    nodes += [node_health("gateway", v, now) for v in sorted(gateways, key=lambda v: v["name"])]
    return nodes
