"""Starting and stopping the lab's processes: the controller, BIRD, the agents.

Each process gets a pid file and a log under the lab's state directory. The
controller runs in the root namespace and also listens inside the mgmt
namespace, so the lab needs no link into the root namespace. BIRD and the
agents run inside their node's namespace via ``ip netns exec``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from l3fabric.lab import routers
from l3fabric.lab.credentials import agent_token_file, token_file
from l3fabric.lab.errors import LabError
from l3fabric.lab.netns import kill_pids, run
from l3fabric.lab.plan import API_PORT_IN_MGMT, Plan
from l3fabric.lab.state import LabState
from l3fabric.pids import alive

SERVER_START_TIMEOUT = 20.0


def _command_available(name: str) -> bool:
    return importlib.util.find_spec(f"l3fabric.commands.{name}") is not None


def require_command(name: str) -> None:
    """Fail clearly when a component the lab needs is not in this installation."""
    if not _command_available(name):
        raise LabError(
            f"{name} command not available: `l3fabric {name}` is not part of this "
            f"installation (no module l3fabric.commands.{name}); the lab cannot start the {name}s"
        )


def l3fabric_argv(*args: str) -> list[str]:
    """Run this very installation of l3fabric (the same interpreter and venv)."""
    return [sys.executable, "-m", "l3fabric.cli", *args]


def _spawn(state: LabState, proc: str, argv: list[str]) -> int:
    log = state.log_file(proc).open("ab")
    try:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: ^C on `lab up` must not kill the lab it built.
            start_new_session=True,
        )
    finally:
        log.close()
    state.pid_file(proc).write_text(f"{child.pid}\n")
    return child.pid


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_server(state: LabState, plan: Plan) -> int:
    """Start the controller and wait until it answers on 127.0.0.1:<port>."""
    require_command("server")
    url = plan.api_url()
    try:
        httpx.get(url, timeout=0.5)
    except httpx.TransportError:
        pass
    else:
        raise LabError(
            f"something already listens on {url}: stop it, or set api.port in the topology"
        )
    mgmt = plan.nodes["mgmt"].namespace
    argv = l3fabric_argv(
        "server",
        "--store",
        f"sqlite:///{state.db}",
        "--listen",
        f"127.0.0.1:{plan.api_port}",
        "--listen-in",
        f"{mgmt}={plan.controller_mgmt}:{API_PORT_IN_MGMT}",
        "--auth",
        "tokens",
        "--token-file",
        str(token_file(state)),
    )
    pid = _spawn(state, "server", argv)
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if not alive(pid):
            raise LabError(
                f"the controller exited at start; its log ({state.log_file('server')}):\n"
                + log_tail(state.log_file("server"))
            )
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return pid
        except httpx.TransportError:
            time.sleep(0.1)
    raise LabError(f"the controller did not answer on {url} within {SERVER_START_TIMEOUT:.0f} s")


def start_bird(state: LabState, plan: Plan, node: str) -> None:
    """Render the router's config and start BIRD in its namespace (BIRD daemonizes)."""
    conf, ctl = state.bird_conf(node), state.bird_ctl(node)
    log = state.log_file(f"bird-{node}")
    conf.write_text(routers.render(plan, node, str(log)))
    pid_file = state.pid_file(f"bird-{node}")
    ns = plan.node(node).namespace
    run(["ip", "netns", "exec", ns, "bird", "-c", str(conf), "-s", str(ctl), "-P", str(pid_file)])


def start_gateway_agent(state: LabState, plan: Plan, node: str) -> int:
    """Start gateway ``node``'s agent in its namespace; the agent starts and owns its BIRD.

    The router socket path (``bird/<node>.ctl``) becomes a link to the
    agent's BIRD socket, so everything that reads a router's BIRD by that
    path (``lab status``, the session wait) finds the gateway's too.
    """
    ns = plan.node(node).namespace
    run_dir = state.agent_dir(node)
    run_dir.mkdir(parents=True, exist_ok=True)
    ctl = state.bird_ctl(node)
    ctl.unlink(missing_ok=True)
    ctl.symlink_to(state.agent_bird_ctl(node))
    argv = l3fabric_argv("gateway", "--name", node, "--api", plan.agent_api_url())
    argv += ["--run-dir", str(run_dir), "--token-file", str(agent_token_file(state, node))]
    return _spawn(state, f"agent-{node}", ["ip", "netns", "exec", ns, *argv])


def start_agent(state: LabState, plan: Plan, node: str) -> int:
    ns = plan.node(node).namespace
    run_dir = str(state.agent_dir(node))
    argv = l3fabric_argv(
        "agent", "--host", node, "--api", plan.agent_api_url(), "--run-dir", run_dir
    )
    argv += ["--token-file", str(agent_token_file(state, node))]
    return _spawn(state, f"agent-{node}", ["ip", "netns", "exec", ns, *argv])


def stop_all(state: LabState) -> None:
    """Kill every process the lab started: by pid file, and by a scan for its state path.

    The scan catches a controller whose pid file was lost (the controller is
    the one process outside the lab's namespaces).
    """
    pids = set(state.pids().values())
    marker = str(state.dir).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes():
                pids.add(int(entry.name))
        except OSError:
            continue
    pids.discard(os.getpid())
    kill_pids(pids)
