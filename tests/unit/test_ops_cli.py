"""``l3fabric status``, ``trace``, ``host``, ``gateway list|show`` and ``fabric`` against a
real controller (uvicorn on loopback, SQLite store): output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from l3fabric import cli
from l3fabric.api.app import create_app
from l3fabric.client import FabricClient
from l3fabric.store.sqlite import SqliteStore
from tests.clients.server import running_server

ESTABLISHED = {
    "name": "g:gw1",
    "peer": "10.0.0.1",
    "state": "up",
    "info": "Established",
    "since": "2026-01-01 10:00:00",
    "routes_in": 3,
    "routes_out": 2,
}


@pytest.fixture
def url(tmp_path: Path, monkeypatch):
    store = SqliteStore(tmp_path / "db")
    with running_server(create_app(store)) as base:
        for name in ("OS_ENDPOINT", "L3FABRIC_API", "OS_TOKEN", "L3FABRIC_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("L3FABRIC_API", base)
        yield base
    store.close()


@pytest.fixture
def api(url):
    with FabricClient(url) as client:
        yield client


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def healthy_host(api: FabricClient, name: str = "h1", address: str = "10.0.1.1") -> None:
    api.register_host(name, router_id=address, address=address)
    api.heartbeat(
        name,
        bgp=[ESTABLISHED],
        agent={
            "version": "0.1.0",
            "endpoints": {"expected": 2, "programmed": 2},
            "last_pass_s": 0.01,
            "last_pass": {"at": 1.8e9, "seconds": 0.01},
            "errors": [],
        },
    )


def test_status_healthy_exits_0_with_every_column(api, capsys) -> None:
    healthy_host(api)
    code, out, err = run(capsys, "status")
    assert code == 0, out + err
    assert "fabric healthy" in out
    assert "h1" in out and "2/2" in out and "0.1.0" in out
    assert "Established" in out and "10.0.0.1" in out
    code, out, _ = run(capsys, "status", "-f", "json")
    report = json.loads(out)
    assert code == 0 and report["healthy"] is True
    (node,) = report["nodes"]
    session = node["sessions"][0]
    assert (session["routes_in"], session["routes_out"], session["established"]) == (3, 2, True)
    assert node["heartbeat_age_s"] < 5


@pytest.mark.parametrize(
    ("session", "agent", "problem"),
    [
        ({**ESTABLISHED, "state": "start", "info": "Active Socket: Connection refused"}, {},
         "BGP session g:gw1 (10.0.0.1) start"),
        (ESTABLISHED, {"endpoints": {"expected": 3, "programmed": 1}},
         "2 endpoint(s) not programmed"),
        ({**ESTABLISHED, "routes_out": 0}, {"endpoints": {"expected": 1, "programmed": 1}},
         "announces no route"),
        (ESTABLISHED, {"errors": ["routes: File exists"]}, "last pass failed: routes"),
    ],
)  # fmt: skip
def test_status_degraded_exits_1_and_names_the_problem(api, capsys, session, agent, problem):
    api.register_host("h1", router_id="10.0.1.1", address="10.0.1.1")
    api.heartbeat("h1", bgp=[session], agent=agent)
    code, out, _ = run(capsys, "status")
    assert code == 1
    assert "DEGRADED" in out and problem in out


def test_status_agent_that_never_reported_is_degraded(api, capsys) -> None:
    healthy_host(api)
    api.register_gateway("gw1", router_id="10.0.0.1", fabric_addresses=["10.0.0.1"])
    code, out, _ = run(capsys, "status", "-f", "json")
    assert code == 1
    nodes = {n["name"]: n for n in json.loads(out)["nodes"]}
    assert nodes["gw1"]["problems"] == ["agent never reported"]
    assert nodes["h1"]["healthy"] is True


def test_status_unreachable_controller_exits_2(capsys) -> None:
    code, out, _ = run(capsys, "status", "--api", "http://127.0.0.1:9")
    assert code == 2
    assert "UNREACHABLE" in out


def test_api_from_os_endpoint_over_l3fabric_api(url, api, capsys, monkeypatch) -> None:
    healthy_host(api)
    monkeypatch.setenv("L3FABRIC_API", "http://127.0.0.1:9")
    monkeypatch.setenv("OS_ENDPOINT", url)
    assert run(capsys, "host", "list")[0] == 0


def test_host_register_list_show(api, capsys) -> None:
    code, out, err = run(
        capsys, "host", "register", "h2", "--router-id", "10.0.1.2", "--address", "10.0.1.2",
        "--rack", "r1", "--peer", "tor1,10.0.1.254,65101",
    )  # fmt: skip
    assert code == 0, err
    assert api.get_host("h2")["peers"] == [{"name": "tor1", "address": "10.0.1.254",
                                           "asn": 65101, "local": None}]  # fmt: skip
    code, out, _ = run(capsys, "host", "list")
    assert code == 0 and "h2" in out and "r1" in out and "DEGRADED" in out
    code, out, _ = run(capsys, "host", "show", "h2", "-f", "json")
    assert code == 0 and json.loads(out)["rack"] == "r1"
    code, _, err = run(capsys, "host", "show", "nope")
    assert code == 1 and "not registered" in err


def test_host_register_bad_input_is_a_clear_error(api, capsys) -> None:
    code, _, err = run(
        capsys, "host", "register", "h3", "--router-id", "not-an-ip", "--address", "10.0.1.3"
    )
    assert code == 1 and "router_id" in err
    with pytest.raises(SystemExit):
        cli.main(["host", "register", "h3", "--router-id", "1.1.1.1", "--address", "1.1.1.1",
                  "--peer", "just-a-name"])  # fmt: skip


def test_gateway_list_and_show(api, capsys) -> None:
    api.register_gateway("gw1", router_id="10.0.0.1", fabric_addresses=["10.0.0.1"])
    code, out, _ = run(capsys, "gateway", "list")
    assert code == 0 and "gw1" in out and "10.0.0.1" in out
    code, out, _ = run(capsys, "gateway", "show", "gw1")
    assert code == 0 and "problem: agent never reported" in out


def test_gateway_agent_needs_a_name(capsys) -> None:
    with pytest.raises(SystemExit, match="needs its name"):
        cli.main(["gateway", "--api", "http://127.0.0.1:9"])


def test_fabric_set_keeps_other_settings(api, capsys) -> None:
    code, out, err = run(capsys, "fabric", "set", "peering=mesh", "bfd.interval_ms=300")
    assert code == 0, err
    config = api.get_fabric()
    assert (config["peering"], config["bfd"]["interval_ms"]) == ("mesh", 300)
    assert config["bfd"]["multiplier"] == 3 and config["asn"] == 65000
    code, out, _ = run(capsys, "fabric", "show")
    assert "bfd.interval_ms" in out and "300" in out
    code, _, err = run(capsys, "fabric", "set", "hold_s=2")
    assert code == 1 and "hold_s" in err
    assert api.get_fabric()["hold_s"] == 90


def test_trace_finds_a_vm_its_host_groups_and_nat(api, capsys) -> None:
    healthy_host(api)
    api.register_gateway("gw1", router_id="10.0.0.1", fabric_addresses=["10.0.0.1"])
    api.gateway_heartbeat(
        "gw1",
        bgp=[{**ESTABLISHED, "name": "h:h1", "peer": "10.0.1.1"}],
        nat={"private_prefixes": ["192.168.5.0/24"], "public_prefixes": []},
    )
    net = api.create_network(name="web")
    api.create_subnet(network_id=net["id"], cidr="192.168.5.0/24")
    port = api.create_port(network_id=net["id"], device_id="vm-a", **{"binding:host_id": "h1"})
    address = port["fixed_ips"][0]["ip_address"]
    for query in (address, "vm-a", port["id"]):
        code, out, err = run(capsys, "trace", query, "-f", "json")
        assert code == 0, err
        (entry,) = json.loads(out)
        assert entry["address"] == address and entry["host"] == "h1"
        assert entry["security_groups"] == ["default"]
        assert entry["reach"] == {"kind": "source NAT", "gateway": "gw1",
                                  "prefix": "192.168.5.0/24"}  # fmt: skip
        assert entry["route"]["announced_to"][0]["peer"] == "10.0.0.1"
        assert entry["route"]["gateways"][0]["gateway"] == "gw1"
    code, out, _ = run(capsys, "trace", address)
    assert "route at   h1" in out and "learned by gateway gw1" in out
    code, out, _ = run(capsys, "trace", "192.168.99.99")
    assert code == 1 and "no port" in out


def _help_texts(parser) -> list[str]:
    import argparse

    texts = [parser.format_help()]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                texts += _help_texts(sub)
    return texts


def test_help_is_for_users() -> None:
    for text in _help_texts(cli.build_parser()):
        assert "``" not in text and "/work" not in text and str(Path.home()) not in text


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("l3fabric ")


def test_status_of_a_controller_without_its_store_exits_2(tmp_path: Path, monkeypatch, capsys):
    store = SqliteStore(tmp_path / "db")
    with running_server(create_app(store)) as base:
        store.close()
        code, out, _ = run(capsys, "status", "--api", base)
    assert code == 2
    assert "FAILING" in out
