"""Where a lab keeps its state: ``/run/l3fabric/labs/<lab>/``.

Under /run (a tmpfs) because the namespaces die with a reboot too, so state
and namespaces live and die together. Layout::

    plan.json          the plan every later command reads
    l3fabric.db        the controller's SQLite store
    etcd/, store.url   with ``store: etcd``: its data and log, and its store URL
    pids/<proc>.pid    one per process the lab started
    logs/<proc>.log    their output
    bird/<node>.conf   rendered router configs, and bird/<node>.ctl sockets
    agents/<host>/     a host agent's run directory (its BIRD: bird/bird.ctl)
    vms/<vm>.json      VMs booted with `lab boot`
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from l3fabric.lab.errors import LabError
from l3fabric.lab.plan import Plan

ROOT = Path(os.environ.get("L3FABRIC_LAB_STATE", "/run/l3fabric/labs"))


class LabState:
    def __init__(self, lab: str, root: Path | None = None) -> None:
        self.lab = lab
        self.dir = (root or ROOT) / lab

    @property
    def plan_file(self) -> Path:
        return self.dir / "plan.json"

    @property
    def db(self) -> Path:
        return self.dir / "l3fabric.db"

    @property
    def store_url_file(self) -> Path:
        """``store: etcd``: the store URL of the lab's etcd (its data is in ``etcd/``)."""
        return self.dir / "store.url"

    def pid_file(self, proc: str) -> Path:
        return self.dir / "pids" / f"{proc}.pid"

    def log_file(self, proc: str) -> Path:
        return self.dir / "logs" / f"{proc}.log"

    def bird_conf(self, node: str) -> Path:
        return self.dir / "bird" / f"{node}.conf"

    def bird_ctl(self, node: str) -> Path:
        return self.dir / "bird" / f"{node}.ctl"

    def agent_dir(self, host: str) -> Path:
        return self.dir / "agents" / host

    def agent_bird_ctl(self, host: str) -> Path:
        """The control socket of the BIRD that host ``host``'s agent runs."""
        return self.agent_dir(host) / "bird" / "bird.ctl"

    def vm_file(self, vm: str) -> Path:
        return self.dir / "vms" / f"{vm}.json"

    def create(self) -> None:
        for sub in ("pids", "logs", "bird", "vms", "agents"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)

    def exists(self) -> bool:
        return self.plan_file.exists()

    def save_plan(self, plan: Plan) -> None:
        self.plan_file.write_text(plan.model_dump_json(indent=1))

    def load_plan(self) -> Plan:
        try:
            return Plan.model_validate_json(self.plan_file.read_text())
        except FileNotFoundError:
            raise LabError(f"lab {self.lab} is not up (no {self.plan_file})") from None

    def pids(self) -> dict[str, int]:
        """Every pid file: process name -> pid (unreadable files are skipped)."""
        out = {}
        for path in sorted((self.dir / "pids").glob("*.pid")):
            try:
                out[path.stem] = int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
        return out

    def vms(self) -> dict[str, dict]:
        out = {}
        for path in sorted((self.dir / "vms").glob("*.json")):
            out[path.stem] = json.loads(path.read_text())
        return out


def lab_names(root: Path | None = None) -> list[str]:
    """Labs that have a state directory."""
    base = root or ROOT
    return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def only_lab(name: str | None) -> str:
    """The lab a command means: the given name, or the only lab that is up."""
    if name:
        return name
    labs = lab_names()
    if len(labs) == 1:
        return labs[0]
    if not labs:
        raise LabError("no lab is up (run `l3fabric lab up TOPOLOGY.yaml`)")
    raise LabError(f"several labs are up ({', '.join(labs)}): say which with --lab")
