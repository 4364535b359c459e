"""``controllers: N`` in a lab topology: N controller processes, every URL for every agent."""

from __future__ import annotations

from pathlib import Path

import pytest

from l3fabric.lab.errors import LabError
from l3fabric.lab.plan import build_plan
from l3fabric.lab.processes import store_url
from l3fabric.lab.state import LabState
from l3fabric.lab.topology import TopologyError, parse_topology

RACK = "name: ha\nracks: [{name: r1, hosts: 1}]\n"


def test_one_controller_by_default() -> None:
    plan = build_plan(parse_topology(RACK))
    assert plan.controllers == 1 and plan.store == "sqlite"
    assert plan.api_urls() == ["http://127.0.0.1:9696"]
    assert plan.agent_api_url() == "http://172.31.254.1:9696"
    assert plan.controller_names() == ["server"]


def test_two_controllers_on_consecutive_ports_and_every_agent_gets_both() -> None:
    plan = build_plan(parse_topology(RACK + "controllers: 2\napi: {port: 8000}\n"))
    assert plan.api_urls() == ["http://127.0.0.1:8000", "http://127.0.0.1:8001"]
    assert plan.api_url() == "http://127.0.0.1:8000"
    assert plan.agent_api_url() == "http://172.31.254.1:9696,http://172.31.254.1:9697"
    assert plan.controller_names() == ["server", "server-2"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("controllers: 0", "controllers: Input should be greater than or equal to 1"),
        ("controllers: 6", "controllers: Input should be less than or equal to 5"),
        ("controllers: 3\napi: {port: 65534}", "ports 65534 to 65536, beyond 65535"),
        ("store: mysql", "store: Input should be 'sqlite'"),
    ],
)
def test_a_bad_controllers_setting_is_refused_by_name(extra: str, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        parse_topology(RACK + extra + "\n")


def test_an_etcd_store_is_planned_and_the_controllers_get_its_url(tmp_path: Path) -> None:
    plan = build_plan(parse_topology(RACK + "store: etcd\n"))
    assert plan.store == "etcd"
    state = LabState("ha", root=tmp_path)
    state.create()
    with pytest.raises(LabError, match="the etcd store was not started"):
        store_url(state, plan)
    state.store_url_file.write_text("etcd://127.0.0.1:2379\n")
    assert store_url(state, plan) == "etcd://127.0.0.1:2379"
    assert store_url(state, build_plan(parse_topology(RACK))) == f"sqlite:///{state.db}"
