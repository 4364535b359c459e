"""``l3fabric lab up|down|status|exec|boot|migrate|delete``: a data centre in network namespaces."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from l3fabric.commands.status import fabric_report
from l3fabric.commands.status import render as render_status
from l3fabric.lab import boot as vm
from l3fabric.lab import down as lab_down
from l3fabric.lab import status as lab_status
from l3fabric.lab.credentials import admin_token_file, lab_client
from l3fabric.lab.demo import run_demo
from l3fabric.lab.errors import LabError
from l3fabric.lab.plan import Plan
from l3fabric.lab.state import LabState, only_lab
from l3fabric.lab.topology import TopologyError, load_topology
from l3fabric.lab.up import up
from l3fabric.osc import CommandFailed

# The example topologies ship inside the package (a checkout's examples/ links to them).
DEFAULT_TOPOLOGY = Path(__file__).resolve().parents[1] / "examples" / "dc.yaml"

console = Console(stderr=True)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("lab", help="build and drive a data centre in network namespaces")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("up", help="build TOPOLOGY.yaml and start everything in it")
    p.add_argument("topology", help="topology file (see docs/lab.md and examples/)")
    p.add_argument(
        "--network-only",
        action="store_true",
        help="build namespaces, links and routers only: no controller, no agents",
    )
    p.add_argument(
        "--no-agents", action="store_true", help="start the controller but no host agents"
    )
    p.set_defaults(func=_up)

    p = verbs.add_parser(
        "demo", help="bring up a data centre, create networks and VMs, check it with packets"
    )
    p.add_argument(
        "topology",
        nargs="?",
        default=str(DEFAULT_TOPOLOGY),
        help="topology file (default: the example data centre shipped with l3fabric, dc.yaml)",
    )
    p.add_argument("--keep", action="store_true", help="leave the lab up for exploring")
    p.set_defaults(func=_demo)

    p = verbs.add_parser("down", help="remove a lab completely (also after a crash)")
    p.add_argument("name", nargs="?", help="lab name (default: the only lab that is up)")
    p.add_argument("--all", action="store_true", help="remove every lab on this machine")
    p.set_defaults(func=_down)

    p = verbs.add_parser(
        "status",
        help="nodes, agents, BGP sessions, routes, VMs; then the fabric's health as "
        "'l3fabric status' sees it (exit 1 when degraded)",
    )
    p.add_argument("--lab", help="lab name (default: the only lab that is up)")
    p.set_defaults(func=_status)

    p = verbs.add_parser("exec", help="run a command in a node's namespace")
    p.add_argument("--lab", help="lab name (default: the only lab that is up)")
    p.add_argument("node", help="host, router, client or VM name")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    p.set_defaults(func=_exec)

    p = verbs.add_parser("boot", help="create a VM: ports bound to HOST and a VM namespace")
    p.add_argument("--lab", help="lab name (default: the only lab that is up)")
    p.add_argument("name", help="VM name")
    p.add_argument(
        "--network",
        action="append",
        required=True,
        help="network name or id (repeat: one port each)",
    )
    p.add_argument("--host", required=True, help="compute host to bind the ports to")
    p.add_argument(
        "--ip", action="append", default=[], help="fixed address of the port on the n-th --network"
    )
    p.add_argument(
        "--anycast",
        action="append",
        default=[],
        metavar="ADDR",
        help="an anycast address the VM holds on its loopback (repeat for several)",
    )
    p.add_argument(
        "--security-group",
        action="append",
        dest="security_groups",
        metavar="GROUP",
        help="security group name or id for every port (repeat for several; "
        f"default: default and {vm.LAB_GROUP}, which admits everything)",
    )
    p.add_argument(
        "--dhcp",
        action="store_true",
        help="leave the VM's interfaces unconfigured and run a DHCP client in it",
    )
    p.add_argument(
        "--dhcp-client",
        choices=("dhclient", "udhcpc"),
        default="dhclient",
        help="the DHCP client --dhcp runs (default %(default)s)",
    )
    p.set_defaults(func=_boot)

    p = verbs.add_parser(
        "migrate", help="live-migrate a VM to HOST (binding-extended, as Nova does)"
    )
    p.add_argument("--lab", help="lab name (default: the only lab that is up)")
    p.add_argument("name", help="VM name")
    p.add_argument("host", help="the compute host to move it to")
    p.set_defaults(func=_migrate)

    p = verbs.add_parser("delete", help="delete a VM's ports and namespace")
    p.add_argument("--lab", help="lab name (default: the only lab that is up)")
    p.add_argument("name", help="VM name")
    p.set_defaults(func=_delete)


def _fail(exc: Exception) -> int:
    console.print(f"[bold red]l3fabric lab:[/] {exc}", highlight=False)
    return 1


def _up(args: argparse.Namespace) -> int:
    # One line per request would drown the progress display.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        topo = load_topology(args.topology)
    except TopologyError as exc:
        return _fail(exc)
    start = time.monotonic()
    try:
        with console.status(f"lab {topo.name}: planning") as status:

            def step(text: str) -> None:
                console.print(f"  [green]✓[/] {time.monotonic() - start:5.1f} s  {text}")
                status.update(f"lab {topo.name}: {text}")

            plan = up(topo, step, network_only=args.network_only, agents=not args.no_agents)
    except (LabError, TopologyError) as exc:
        return _fail(exc)
    console.print(
        f"lab [bold]{plan.lab}[/] is up in {time.monotonic() - start:.1f} s: "
        f"{len(plan.nodes)} namespaces, API {plan.api_url()}",
        highlight=False,
    )
    if not args.network_only:
        console.print(
            f"live picture: {plan.api_url()}/ui#token=... (the admin token: "
            f"{admin_token_file(LabState(plan.lab))})",
            highlight=False,
        )
    return 0


def _demo(args: argparse.Namespace) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        topo = load_topology(args.topology)
        ok = run_demo(topo, Console(highlight=False), keep=args.keep)
    except (LabError, TopologyError, CommandFailed) as exc:
        return _fail(exc)
    return 0 if ok else 1


def _down(args: argparse.Namespace) -> int:
    try:
        names = lab_down.all_labs() if args.all else [only_lab(args.name)]
        for name in names:
            removed = lab_down.down(name)
            console.print(f"lab {name}: removed {len(removed)} namespaces", highlight=False)
    except LabError as exc:
        return _fail(exc)
    return 0


def _status(args: argparse.Namespace) -> int:
    try:
        state = LabState(only_lab(args.lab))
        plan = state.load_plan()
    except LabError as exc:
        return _fail(exc)
    out = Console()
    server = lab_status.server_alive(state)
    alive = "running" if server else "[red]not running[/]"
    out.print(f"lab [bold]{plan.lab}[/]: controller {plan.api_url()} {alive}")
    table = Table("node", "role", "namespace", "agent", "BGP established", "routes v4/v6")
    nodes = lab_status.node_status(state, plan)
    for n in nodes:
        agent = "-" if n.agent is None else ("alive" if n.agent else "[red]dead[/]")
        bgp = f"{n.established}/{len(n.sessions)}" if n.sessions else "-"
        table.add_row(
            n.name,
            n.role,
            "yes" if n.namespace else "[red]missing[/]",
            agent,
            bgp,
            f"{n.routes4}/{n.routes6}",
        )
    out.print(table)
    vms = state.vms()
    if vms:
        vt = Table("VM", "host", "interfaces")
        for name, record in vms.items():
            ifaces = "; ".join(
                f"{p['ifname']} {' '.join(f['ip_address'] for f in p['fixed_ips'])}"
                for p in record["ports"]
            )
            if record.get("anycast"):
                ifaces += f"; lo {' '.join(record['anycast'])} (anycast)"
            vt.add_row(name, record["host"], ifaces)
        out.print(vt)
    return _fabric_health(out, plan, server, nodes)


def _fabric_health(
    out: Console, plan: Plan, server: bool, nodes: list[lab_status.NodeStatus]
) -> int:
    """``l3fabric status`` of the lab's controller, plus the lab's own processes and namespaces."""
    with lab_client(plan) as api:
        code, report = fabric_report(api)
    # Plain text of its own: not wrapped at the console's width, no markup.
    out.print(render_status(report), highlight=False, markup=False, soft_wrap=True)
    lab_problems = [f"{n.name}: namespace missing" for n in nodes if not n.namespace]
    lab_problems += [f"{n.name}: agent process dead" for n in nodes if n.agent is False]
    if not server:
        lab_problems.append("controller process not running")
    for problem in lab_problems:
        out.print(f"  lab {problem}", highlight=False, markup=False)
    return code if code != 0 or not lab_problems else 1


def _exec(args: argparse.Namespace) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        return _fail(LabError("give a command: l3fabric lab exec NODE -- COMMAND"))
    try:
        state = LabState(only_lab(args.lab))
        plan = state.load_plan()
        if args.node in plan.nodes:
            ns = plan.nodes[args.node].namespace
        elif args.node in state.vms():
            ns = state.vms()[args.node]["namespace"]
        else:
            raise LabError(f"lab {plan.lab} has no node or VM {args.node!r}")
    except LabError as exc:
        return _fail(exc)
    sys.stdout.flush()
    os.execvp("ip", ["ip", "netns", "exec", ns, *cmd])
    return 127  # not reached: exec replaced this process


def _boot(args: argparse.Namespace) -> int:
    try:
        state = LabState(only_lab(args.lab))
        record = vm.boot(
            state.load_plan(),
            state,
            args.name,
            args.network,
            args.host,
            args.ip,
            args.anycast,
            args.security_groups,
            dhcp=args.dhcp_client if args.dhcp else None,
        )
    except LabError as exc:
        return _fail(exc)
    for p in record["ports"]:
        ips = " ".join(f["ip_address"] for f in p["fixed_ips"])
        print(f"{record['name']} {p['ifname']} {ips} port {p['id']} on {record['host']}")
    for address in record["anycast"]:
        print(f"{record['name']} lo {address} (anycast)")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from l3fabric.lab.migrate import migrate

    try:
        state = LabState(only_lab(args.lab))
        record = migrate(state.load_plan(), state, args.name, args.host)
    except LabError as exc:
        return _fail(exc)
    print(f"{record['name']} now on {record['host']}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    try:
        state = LabState(only_lab(args.lab))
        vm.delete(state.load_plan(), state, args.name)
    except LabError as exc:
        return _fail(exc)
    return 0
