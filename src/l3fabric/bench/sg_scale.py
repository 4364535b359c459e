"""Scale check of the security-group table: render and apply times, small-change sizes.

``scale_state(ports, members)``: ``ports`` ports, each in two groups of ten
rules (20 in all), one ``remote_group_id`` rule in each over a group of
``members`` members. ``measure(netns)`` applies it to a namespace (taps need
not exist: the maps match names) and times a full apply, a full pass that
finds nothing to do, a one-rule change and a one-member change.

Run: ``python -m l3fabric.bench.sg_scale`` (root; makes and removes a
namespace ``l3f-sgscale-<pid>``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

from l3fabric.dataplane import netns as netns_mod
from l3fabric.dataplane.secgroups import SecurityGroupsTable
from l3fabric.dataplane.sg_model import SecurityGroup, SgPort, SgRule, SgState
from l3fabric.dataplane.sg_render import render

WEB, APP = "5ca1e000-0000-4000-8000-000000000001", "5ca1e000-0000-4000-8000-000000000002"
RG1, RG2 = "5ca1e000-0000-4000-8000-000000000011", "5ca1e000-0000-4000-8000-000000000012"


def _group(group_id: str, remote: str, base_port: int) -> SecurityGroup:
    rules = [SgRule("ingress", "IPv4", remote_group=remote), SgRule("egress", "IPv4")]
    rules += [SgRule("ingress", "IPv4", 6, base_port + i, base_port + i) for i in range(6)]
    rules += [SgRule("ingress", "IPv4", 17, 5000, 5100), SgRule("ingress", "IPv6", 58, 128)]
    return SecurityGroup(group_id, tuple(rules))


def scale_state(ports: int = 1000, members: int = 1000) -> SgState:
    """``ports`` ports in WEB and APP (10 rules each); RG1 and RG2 with ``members`` members."""
    groups = {WEB: _group(WEB, RG1, 80), APP: _group(APP, RG2, 8000)}
    sg_ports = {
        f"tap{i:011d}": SgPort(f"tap{i:011d}", (WEB, APP), True, (f"10.0.{i // 250}.{i % 250}/32",))
        for i in range(ports)
    }
    rg = {
        g: tuple(f"10.{100 + n}.{i // 250}.{i % 250}/32" for i in range(members))
        for n, g in enumerate((RG1, RG2))
    }
    return SgState(groups, sg_ports, rg)


def _timed(table: SecurityGroupsTable, state: SgState, full: bool = False) -> dict[str, Any]:
    started = time.monotonic()
    report = table.apply(state, full=full)
    return {
        "seconds": round(time.monotonic() - started, 4),
        "nft_s": round(report.nft_s, 4),
        "statements": report.transaction.statements,
        "bytes": report.transaction.size,
        "full": report.transaction.full,
    }


def measure(netns: str, ports: int = 1000, members: int = 1000) -> dict[str, Any]:
    """Times and transaction sizes at this scale (see the module doc)."""
    state = scale_state(ports, members)
    started = time.monotonic()
    rendered = render(state)
    render_s = time.monotonic() - started
    table = SecurityGroupsTable(netns)
    result: dict[str, Any] = {
        "ports": ports,
        "rules_per_port": sum(len(state.groups[g].rules) for g in (WEB, APP)),
        "members_per_remote_group": members,
        "chains": len(rendered.chains),
        "render_s": round(render_s, 4),
        "full_apply": _timed(table, state),
        "full_pass_unchanged": _timed(table, state, full=True),
    }
    web = state.groups[WEB]
    more = dataclasses.replace(web, rules=(*web.rules, SgRule("ingress", "IPv4", 6, 22, 22)))
    one_rule = dataclasses.replace(state, groups={**state.groups, WEB: more})
    result["one_rule_added"] = _timed(table, one_rule)
    result["one_rule_removed"] = _timed(table, state)
    joined = {**state.members, RG1: (*state.members[RG1], "10.99.0.1/32")}
    result["one_member_added"] = _timed(table, dataclasses.replace(state, members=joined))
    result["one_member_removed"] = _timed(table, state)
    return result


def main() -> None:
    name = f"l3f-sgscale-{os.getpid()}"
    netns_mod.create(name)
    try:
        print(json.dumps(measure(name), indent=2))
    finally:
        netns_mod.delete(name)


if __name__ == "__main__":
    main()
