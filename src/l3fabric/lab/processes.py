"""Starting and stopping the lab's processes: the controllers, BIRD, the agents.

Each process gets a pid file and a log under the lab's state directory. The
controllers (``controllers: N`` in the topology, one store) run in the root
namespace and also listen inside the mgmt namespace, so the lab needs no
link into the root namespace. BIRD and the
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
from l3fabric.store.etcd_local import ETCD_BINARY, LocalEtcd

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


def spawn(state: LabState, proc: str, argv: list[str]) -> int:
    """Start ``argv`` as lab process ``proc``: its own session, its log and pid file."""
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


def start_store(state: LabState, plan: Plan) -> None:
    """``store: etcd``: an etcd cluster of ``etcd_members`` on loopback, its data under the
    state directory (so ``lab down`` finds and ends it), pid files ``etcd-1``, ``etcd-2``, ...;
    its store URL names every member. ``sqlite`` needs nothing started."""
    if plan.store != "etcd":
        return
    if not Path(ETCD_BINARY).exists():
        raise LabError(f"store etcd needs {ETCD_BINARY} (Debian's etcd-server; run `make setup`)")
    parent = state.dir / "etcd"
    parent.mkdir(exist_ok=True)
    # etcd takes free loopback ports: not the ones the controllers are about to use.
    taken = {plan.api_port + i for i in range(plan.controllers)}
    name = f"l3f-{plan.lab}-etcd"
    cluster = LocalEtcd(plan.etcd_members, name=name, parent=parent)
    while {p for m in cluster.members for p in (m.client_port, m.peer_port)} & taken:
        cluster = LocalEtcd(plan.etcd_members, name=name, parent=parent)
    try:
        cluster.start()
    except RuntimeError as exc:
        raise LabError(f"etcd did not start: {exc}") from None
    for index, member in enumerate(cluster.members, start=1):
        assert member.proc is not None
        state.pid_file(f"etcd-{index}").write_text(f"{member.proc.pid}\n")
    state.store_url_file.write_text(cluster.url + "\n")


def store_url(state: LabState, plan: Plan) -> str:
    """The store every controller of the lab shares (``store`` in the topology)."""
    if plan.store == "sqlite":
        # One file, several processes: WAL, BEGIN IMMEDIATE and a polled watch.
        return f"sqlite:///{state.db}"
    try:
        return state.store_url_file.read_text().strip()
    except OSError:
        raise LabError(f"lab {plan.lab}: the {plan.store} store was not started") from None


def _server_argv(state: LabState, plan: Plan, index: int) -> list[str]:
    mgmt = plan.nodes["mgmt"].namespace
    return l3fabric_argv(
        "server",
        "--store",
        store_url(state, plan),
        "--listen",
        f"127.0.0.1:{plan.api_port + index}",
        "--listen-in",
        f"{mgmt}={plan.controller_mgmt}:{API_PORT_IN_MGMT + index}",
        "--auth",
        "tokens",
        "--token-file",
        str(token_file(state)),
    )


def _wait_answering(state: LabState, name: str, url: str, pid: int) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if not alive(pid):
            raise LabError(
                f"the controller {name} exited at start; its log ({state.log_file(name)}):\n"
                + log_tail(state.log_file(name))
            )
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise LabError(f"the controller did not answer on {url} within {SERVER_START_TIMEOUT:.0f} s")


def _refuse_busy(url: str) -> None:
    try:
        httpx.get(url, timeout=0.5)
    except httpx.TransportError:
        return
    raise LabError(f"something already listens on {url}: stop it, or set api.port in the topology")


def _launch(state: LabState, plan: Plan, index: int) -> int:
    return spawn(state, plan.controller_names()[index], _server_argv(state, plan, index))


def start_server(state: LabState, plan: Plan, index: int = 0) -> int:
    """Start controller ``index`` (from 0) and wait until it answers on 127.0.0.1; its pid."""
    require_command("server")
    url = plan.api_urls()[index]
    _refuse_busy(url)
    pid = _launch(state, plan, index)
    _wait_answering(state, plan.controller_names()[index], url, pid)
    return pid


def start_servers(state: LabState, plan: Plan) -> list[int]:
    """Start every controller; their pids. The first starts alone (it creates the
    store), the others then side by side."""
    urls, names = plan.api_urls(), plan.controller_names()
    for url in urls[1:]:
        _refuse_busy(url)
    first = start_server(state, plan, 0)
    rest = [_launch(state, plan, i) for i in range(1, len(urls))]
    for i, pid in enumerate(rest, start=1):
        _wait_answering(state, names[i], urls[i], pid)
    return [first, *rest]


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
    return spawn(state, f"agent-{node}", ["ip", "netns", "exec", ns, *argv])


def start_agent(state: LabState, plan: Plan, node: str) -> int:
    ns = plan.node(node).namespace
    run_dir = str(state.agent_dir(node))
    argv = l3fabric_argv(
        "agent", "--host", node, "--api", plan.agent_api_url(), "--run-dir", run_dir
    )
    argv += ["--token-file", str(agent_token_file(state, node))]
    return spawn(state, f"agent-{node}", ["ip", "netns", "exec", ns, *argv])


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
