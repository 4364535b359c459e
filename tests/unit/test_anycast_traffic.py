"""The anycast traffic tools on loopback (no root): member service, clients, settle time."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from l3fabric.lab import anycast_traffic as traffic
from l3fabric.lab.anycast_traffic import Listen, MemberServers, Sample, settle_time
from l3fabric.loopback import free_port


@pytest.fixture
def member() -> Iterator[tuple[MemberServers, int, int]]:
    port, health = free_port(), free_port()
    specs = [
        Listen("m1", None, "127.0.0.1", port),
        Listen("m1", None, "127.0.0.1", health, "health"),
    ]
    with MemberServers(specs) as servers:
        yield servers, port, health


def http_get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data


def test_member_greets_answers_each_line_and_serves_health(member) -> None:
    _, port, health = member
    flows = traffic.open_flows(None, "127.0.0.1", 3, port)
    try:
        assert [f.member for f in flows] == ["m1"] * 3
        assert [traffic.ask(f) for f in flows] == ["m1"] * 3
        assert traffic.ask(flows[0]) == "m1"  # and again: the connection stays open
    finally:
        traffic.close_flows(flows)
    ok = http_get(health, "/health")
    assert ok.startswith(b"HTTP/1.0 200 OK\r\n") and ok.endswith(b"\r\n\r\nm1\n")
    assert http_get(health, "/other").startswith(b"HTTP/1.0 404 ")


def test_stopping_a_member_closes_its_connections_and_listeners(member) -> None:
    servers, port, _ = member
    flows = traffic.open_flows(None, "127.0.0.1", 2, port)
    try:
        assert servers.stop("m1") == 4  # two listeners, two connections
        assert [traffic.ask(f) for f in flows] == [None, None]
    finally:
        traffic.close_flows(flows)
    assert traffic.who(None, "127.0.0.1", port) is None


def test_spread_counts_members_and_failures(member) -> None:
    _, port, _ = member
    got = traffic.spread(None, "127.0.0.1", port, connections=40, concurrency=8)
    assert got.counts == {"m1": 40} and got.failed == 0 and got.share("m1") == 100.0
    refused = traffic.spread(None, "127.0.0.1", free_port(), connections=5)
    assert refused.failed == 5 and not refused.counts and refused.share("m1") == 0.0


def test_sampler_records_new_connections_until_its_limit(member) -> None:
    _, port, _ = member
    started = time.monotonic()
    with traffic.Sampler(None, "127.0.0.1", port, period=0.01, limit=0.5) as sampler:
        settled = sampler.wait_for(lambda m: m == "m1", after=started, steady=0.1, timeout=3)
    assert settled == 0.0
    assert len(sampler.samples) >= 10 and {s.member for s in sampler.samples} == {"m1"}
    assert sampler.samples == sorted(sampler.samples, key=lambda s: s.t)
    assert sampler.samples[-1].t - started < 1.0  # it stopped by itself


def good(member: str | None) -> bool:
    return member in ("a", "b")


def test_settle_time_is_from_the_event_to_the_first_good_sample_after_the_last_bad() -> None:
    samples = [
        Sample(0.5, "c"),  # before the event: ignored
        Sample(1.0, "a"),
        Sample(1.1, None),
        Sample(1.2, "c"),
        Sample(1.3, "b"),
        Sample(1.4, "a"),
    ]
    assert settle_time(samples, 1.0, good) == pytest.approx(0.3)
    assert settle_time(samples[:1] + samples[1:2], 1.0, good) == 0.0
    assert settle_time(samples[:4], 1.0, good) is None  # still bad at the end
    assert settle_time([], 1.0, good) == 0.0


def test_broken_lists_flows_of_surviving_members_that_changed() -> None:
    a, b, c = (traffic.Flow(socket.socket(), m) for m in ("a", "b", "c"))
    try:
        flows = [a, b, c]
        assert traffic.broken(flows, ["a", "b", None], gone="c") == []
        assert traffic.broken(flows, ["a", None, None], gone="c") == [b]
        assert traffic.broken(flows, ["b", "b", "c"], gone="c") == [a]
    finally:
        traffic.close_flows(flows)
