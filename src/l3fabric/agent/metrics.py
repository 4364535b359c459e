"""An agent's metrics (Prometheus) and its health, as ``agent/status_http.py`` serves them.

Recorded as they happen: ``l3fabric_agent_pass_seconds{kind}``,
``l3fabric_agent_passes_total{result}`` and
``l3fabric_agent_nftables_transaction_seconds{table}`` (each pass's nft steps).
Read when scraped, from what the agent last saw (no extra BIRD or kernel
call): endpoints expected and programmed, BGP sessions by state, BGP routes
imported and exported, routes the import filters reject, the age of the last
heartbeat the controller took and, on a gateway, the conntrack counters.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from l3fabric import __version__
from l3fabric.agent.execute import PassMetrics

# Pass steps that are one nftables transaction (host: anti-spoofing and
# security groups; gateway: the NAT table).
NFT_STEPS = ("nft", "secgroups", "nat")
# Passes of a host with 10,000 endpoints take seconds; idle ones milliseconds.
PASS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf"))


def _gauge(name: str, text: str, labels: list[str], values: dict[tuple[str, ...], float]) -> Metric:
    family = GaugeMetricFamily(name, text, labels=labels)
    for label_values, value in values.items():
        family.add_metric(list(label_values), value)
    return family


class AgentState(Collector):
    """Gauges read at scrape time through ``read()`` (the agent's last report)."""

    def __init__(self, role: str, read: Callable[[], dict[str, Any]]) -> None:
        self.role = role
        self.read = read

    def collect(self) -> Iterator[Metric]:
        state = self.read()
        info = InfoMetricFamily("l3fabric_agent", "The agent's role and version")
        info.add_metric([], {"role": self.role, "version": __version__})
        yield info
        sessions = state.get("bgp", [])
        by_state = Tally(_session_state(s) for s in sessions)
        yield _gauge(
            "l3fabric_agent_bgp_sessions", "BGP sessions by state", ["state"],
            {(k,): v for k, v in by_state.items()} or {("Established",): 0},
        )  # fmt: skip
        yield _gauge(
            "l3fabric_agent_bgp_routes", "BGP routes over all sessions", ["direction"],
            {("imported",): sum(s.get("routes_in", 0) for s in sessions),
             ("exported",): sum(s.get("routes_out", 0) for s in sessions)},
        )  # fmt: skip
        yield _gauge(
            "l3fabric_agent_rejected_routes",
            "Routes from peers the import filter refuses now (rejected announcements)",
            [],
            {(): sum(s.get("rejected", 0) for s in sessions)},
        )
        ends = state.get("endpoints")
        if ends is not None:
            yield _gauge(
                "l3fabric_agent_endpoints", "Endpoints to program (expected) and programmed",
                ["state"], {(k,): v for k, v in ends.items()},
            )  # fmt: skip
        age = state.get("heartbeat_age_s")
        if age is not None:
            yield _gauge(
                "l3fabric_agent_heartbeat_age_seconds",
                "Seconds since the controller last took this agent's heartbeat",
                [],
                {(): age},
            )
        nat = state.get("nat")
        if nat is not None:
            yield from _nat_metrics(nat)


def _session_state(session: dict[str, Any]) -> str:
    info = str(session.get("info", ""))
    if info.startswith("Established"):
        return "Established"
    if session.get("state") == "skipped":
        return "skipped"
    return info.split()[0] if info else str(session.get("state", "unknown"))


def _nat_metrics(nat: dict[str, Any]) -> Iterator[Metric]:
    if "conntrack_entries" in nat:
        yield _gauge(
            "l3fabric_gateway_conntrack_entries",
            "Tracked flows now (NATed and not) in the gateway's namespace",
            [],
            {(): nat["conntrack_entries"]},
        )
    failures = nat.get("conntrack_stats") or {}
    if failures:
        family = GaugeMetricFamily(
            "l3fabric_gateway_conntrack_failures",
            "conntrack's failure counters since boot (translation and tracking failures)",
            labels=["counter"],
        )
        for name, value in sorted(failures.items()):
            family.add_metric([name], value)
        yield family


class AgentMetrics:
    """One agent's registry: pass histograms and the scrape-time gauges."""

    def __init__(self, role: str, read: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.pass_seconds = Histogram(
            "l3fabric_agent_pass_seconds", "Reconcile pass time", ["kind"],
            buckets=PASS_BUCKETS, registry=r,
        )  # fmt: skip
        self.passes = Counter(
            "l3fabric_agent_passes", "Reconcile passes by result", ["result"], registry=r
        )
        self.nft_seconds = Histogram(
            "l3fabric_agent_nftables_transaction_seconds",
            "nftables transaction time, per table",
            ["table"],
            buckets=PASS_BUCKETS,
            registry=r,
        )
        r.register(AgentState(role, read))

    def observe_pass(self, metrics: PassMetrics) -> None:
        self.pass_seconds.labels(metrics.kind).observe(metrics.seconds)
        self.passes.labels("error" if metrics.errors else "ok").inc()
        for name in NFT_STEPS:
            step = metrics.steps.get(name)
            if step is not None and step.ops:
                self.nft_seconds.labels(name).observe(step.seconds)


def age(monotonic_at: float | None) -> float | None:
    """Seconds since ``monotonic_at`` (None stays None)."""
    return None if monotonic_at is None else round(time.monotonic() - monotonic_at, 3)
