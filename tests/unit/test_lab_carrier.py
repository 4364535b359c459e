"""lab up's repair of veths left without carrier (lab/carrier.py), on recorded ``ip -j`` output."""

from __future__ import annotations

import json

import pytest

from l3fabric.lab import carrier, netns
from l3fabric.lab.plan import build_plan
from l3fabric.lab.topology import parse_topology

LINKS = {
    "l3f-t-mgmt": [
        {"ifname": "lo", "flags": ["LOOPBACK", "UP", "LOWER_UP"]},
        {"ifname": "l3f-m0", "flags": ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP"]},
        {"ifname": "l3f-m1", "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"]},
        {"ifname": "eth9", "flags": ["NO-CARRIER", "BROADCAST", "UP"]},  # not the lab's
    ],
    "l3f-t-gw1": [
        {"ifname": "l3f-u0", "flags": ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP"]},
        {"ifname": "l3f-f0", "flags": ["NO-CARRIER", "BROADCAST", "MULTICAST"]},  # set down
    ],
}


def test_a_link_that_gets_its_carrier_while_settling_is_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = iter([LINKS["l3f-t-gw1"][:1], []])

    def run(cmd: list[str], **_: object) -> str:
        return json.dumps(next(answers, []) if cmd[2] == "l3f-t-gw1" else [])

    monkeypatch.setattr(netns, "run", run)
    monkeypatch.setattr(netns, "batch", lambda *_: pytest.fail("nothing to repair"))
    plan = build_plan(parse_topology("name: t\nracks: [{name: r1, hosts: 1}]\n"))
    assert carrier.repair(plan, settle=2.0) == {}


def test_stuck_links_are_set_down_and_up_again_in_their_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batches: list[tuple[list[str], str | None]] = []

    def run(cmd: list[str], **_: object) -> str:
        return json.dumps(LINKS.get(cmd[2], [{"ifname": "lo", "flags": ["UP"]}]))

    monkeypatch.setattr(netns, "run", run)
    monkeypatch.setattr(netns, "batch", lambda lines, ns=None: batches.append((list(lines), ns)))
    plan = build_plan(parse_topology("name: t\nracks: [{name: r1, hosts: 1}]\n"))
    assert carrier.repair(plan, settle=0.2) == {"l3f-t-gw1": ["l3f-u0"], "l3f-t-mgmt": ["l3f-m0"]}
    assert sorted(batches, key=lambda b: str(b[1])) == [
        (["link set l3f-u0 down", "link set l3f-u0 up"], "l3f-t-gw1"),
        (["link set l3f-m0 down", "link set l3f-m0 up"], "l3f-t-mgmt"),
    ]
