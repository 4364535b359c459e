"""``lab status``: what runs in a lab and how its routing looks.

The controllers (URL for commands, URL for the agents, process running), then
per node: role, namespace present, agent alive (hosts), BGP sessions
established out of configured (from BIRD's control socket), IPv4 and IPv6
route counts in the node's kernel; then the VMs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from l3fabric.lab import bird, netns, processes
from l3fabric.lab.plan import Plan
from l3fabric.lab.state import LabState
from l3fabric.routing.bird_control import ProtocolStatus


@dataclass
class NodeStatus:
    name: str
    role: str
    namespace: bool
    agent: bool | None  # None: no agent was started for this node
    sessions: list[ProtocolStatus] = field(default_factory=list)
    routes4: int = 0
    routes6: int = 0

    @property
    def established(self) -> int:
        return sum(1 for p in self.sessions if p.established)


def _route_count(ns: str, family: str) -> int:
    try:
        out = netns.run(["ip", "-n", ns, family, "route", "show"], timeout=10)
    except netns.LabError:
        return 0
    return len(out.splitlines())


def node_status(state: LabState, plan: Plan) -> list[NodeStatus]:
    present = set(netns.lab_namespaces(plan.lab))
    pids = state.pids()
    out = []
    for node in plan.nodes.values():
        agent = None
        pid = pids.get(f"agent-{node.name}")
        if pid is not None:
            agent = processes.alive(pid)
        ctl = state.agent_bird_ctl(node.name) if node.role == "host" else state.bird_ctl(node.name)
        sessions = [p for p in bird.protocols(ctl) if p.proto == "BGP"]
        exists = node.namespace in present
        out.append(
            NodeStatus(
                name=node.name,
                role=node.role,
                namespace=exists,
                agent=agent,
                sessions=sessions,
                routes4=_route_count(node.namespace, "-4") if exists else 0,
                routes6=_route_count(node.namespace, "-6") if exists else 0,
            )
        )
    return out


@dataclass
class ControllerStatus:
    name: str  # its process name (pid and log file)
    url: str  # for commands in the root namespace
    agent_url: str  # for the agents, inside the lab
    alive: bool


def controller_status(state: LabState, plan: Plan) -> list[ControllerStatus]:
    """Every controller the lab started, and whether its process runs."""
    pids = state.pids()
    return [
        ControllerStatus(name, url, agent_url, name in pids and processes.alive(pids[name]))
        for name, url, agent_url in zip(
            plan.controller_names(), plan.api_urls(), plan.agent_api_urls(), strict=True
        )
    ]
