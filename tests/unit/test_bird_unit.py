"""--bird-unit: BIRD as a systemd unit of its own, so an agent's unit may kill its control group."""

from __future__ import annotations

import argparse

import pytest

from l3fabric.commands.agent_runner import add_agent_arguments, run_agent
from l3fabric.gateway.agent import GatewayAgent
from l3fabric.routing.bird_process import BirdProcess, systemd_unit_argv


def test_bird_starts_as_its_own_foreground_unit_with_its_limits(tmp_path) -> None:
    bird = BirdProcess("bird", netns="l3f-x-h1", run_dir=str(tmp_path), nice=-5)
    assert bird.start_argv()[:3] == ["ip", "netns", "exec"]  # the default: a daemon beside us
    bird.unit = "l3fabric-agent-bird"
    argv = bird.start_argv()
    assert argv[:2] == ["systemd-run", "--unit=l3fabric-agent-bird"]
    assert "--collect" in argv  # the name is free again once BIRD exits
    assert "--property=Nice=-5" in argv
    assert "--property=LimitNOFILE=8192" in argv
    assert "--property=NetworkNamespacePath=/run/netns/l3f-x-h1" in argv
    bird_argv = argv[argv.index("--") + 1 :]
    assert bird_argv[0] == "bird" and bird_argv[-1] == "-f"  # foreground: the unit is BIRD
    assert str(tmp_path / "bird" / "bird.pid") in bird_argv  # adopted again by its pid file


@pytest.mark.parametrize("unit", ["", "../x", "a b", "x;y", "-x"])
def test_bad_unit_names_are_refused(unit: str) -> None:
    with pytest.raises(ValueError, match="bad unit name"):
        systemd_unit_argv(unit, None, 0, ["bird"])


def test_gateway_with_its_bird_unit_logs_to_the_journal_not_a_file(tmp_path) -> None:
    gateway = GatewayAgent("gw1", "http://127.0.0.1:1", tmp_path)
    assert gateway.bird_log is not None
    gateway.use_bird_unit("l3fabric-gateway-bird")
    assert gateway.bird.unit == "l3fabric-gateway-bird"
    assert gateway.bird_log is None


def test_agent_refuses_a_bad_bird_unit_name_before_it_starts(tmp_path) -> None:
    parser = argparse.ArgumentParser()
    add_agent_arguments(parser, "--name", "gateway", 10.0)
    argv = ["--name", "gw1", "--api", "http://127.0.0.1:1", "--run-dir", str(tmp_path)]
    args = parser.parse_args([*argv, "--metrics-listen", "off", "--bird-unit", "x y"])
    with pytest.raises(SystemExit, match="--bird-unit: bad unit name"):
        run_agent(
            args, "gateway", lambda name, api, run_dir, every: GatewayAgent(name, api, run_dir)
        )
