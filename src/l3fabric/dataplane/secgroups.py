"""Security groups on a host: the applier of sg_render / sg_diff / sg_flows (docs/security-groups.md).

``SecurityGroupsTable(netns).apply(state, full=...)`` renders ``state``, diffs
it against the kernel's table (``full``: read back with ``nft -j``, so drift
is repaired) or against what it applied last (incremental), runs the one
``nft -f`` transaction that is needed (in process: dataplane/nft_exec.py),
and, when the change may admit less, removes the conntrack entries of flows
the new rules would not let start.

For a plan/applier split: ``listing()`` (observe), ``sg_diff.transaction``
(plan, pure), ``run_script`` and ``prune`` (apply).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field

from l3fabric.dataplane import netns as netns_mod
from l3fabric.dataplane.links import Links
from l3fabric.dataplane.nft import NftError
from l3fabric.dataplane.nft_exec import NftRunner
from l3fabric.dataplane.sg_diff import (
    SgListing,
    Transaction,
    listing_of,
    parse_listing,
    transaction,
)
from l3fabric.dataplane.sg_flows import Flow, delete_args, parse_conntrack, stale_flows
from l3fabric.dataplane.sg_model import SgState
from l3fabric.dataplane.sg_render import FAMILY, TABLE, Rendered, render

_TIMEOUT_S = 30


@dataclass
class SgReport:
    """One apply: the transaction run (empty if none), flows removed, times."""

    transaction: Transaction = field(default_factory=Transaction)
    pruned: list[Flow] = field(default_factory=list)
    render_s: float = 0.0
    nft_s: float = 0.0
    prune_s: float = 0.0
    errors: list[str] = field(default_factory=list)


class SecurityGroupsTable:
    """The ``inet l3fabric-sg`` table in namespace ``netns`` (None: the current one)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._nft = NftRunner(netns)  # in process (libnftables) where it can
        # What the last transaction left, as rendered (its listing is made only
        # when ``apply`` needs it: the agent's passes never do, and at 10,000
        # ports it is an O(host) walk a one-port change need not pay).
        self._applied: Rendered | None = None

    def _run(self, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            netns_mod.command(self.netns, argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
        )

    def listing(self) -> SgListing | None:
        """The kernel's table, None if there is none."""
        done = self._nft.run(["-j", "list", "table", FAMILY, TABLE])
        return parse_listing(done.stdout) if done.returncode == 0 else None

    def run_script(self, script: str) -> None:
        """Run one ``nft -f`` transaction (e.g. a planned ``Transaction.script``)."""
        done = self._nft.run(["-f", "-"], stdin=script)
        if done.returncode != 0:
            self._applied = None  # unknown now: read the kernel next time
            raise NftError(f"nft rejected the security-group change: {done.stderr.strip()}")

    def apply(self, state: SgState, full: bool = False) -> SgReport:
        """Converge the table to ``state``; prune flows it no longer allows."""
        started = time.monotonic()
        rendered = render(state)
        render_s = time.monotonic() - started
        applied = self._applied
        current = listing_of(applied) if applied is not None and not full else self.listing()
        report = self.carry_out(transaction(rendered, current), rendered, state)
        report.render_s = render_s
        return report

    def carry_out(self, todo: Transaction, rendered: Rendered, state: SgState) -> SgReport:
        """Run a planned transaction (the whole table if the patch is refused), then prune."""
        report = SgReport(errors=list(state.errors))
        started = time.monotonic()
        if todo.script:
            try:
                self.run_script(todo.script)
            except NftError:
                if todo.full:
                    raise
                # Patching failed (objects changed by hand): replace the table.
                todo = transaction(rendered, None)
                self.run_script(todo.script)
        report.nft_s = time.monotonic() - started
        report.transaction = todo
        self._applied = rendered
        if todo.narrowed:
            started = time.monotonic()
            report.pruned = self.prune(state)
            report.prune_s = time.monotonic() - started
        return report

    def host_addresses(self) -> list[str]:
        """The namespace's own addresses: flows to or from them never cross forward.

        One netlink address dump: ``ip -j addr show`` also dumped every link
        (10,000 taps: ~0.2 s, each pruning pass).
        """
        with Links(self.netns) as links:
            return links.addresses()

    def flows(self) -> list[Flow]:
        """Every tracked flow of the namespace (both families)."""
        flows: list[Flow] = []
        for family in ("ipv4", "ipv6"):
            done = self._run(["conntrack", "-L", "-f", family, "-o", "extended"])
            flows += parse_conntrack(done.stdout)
        return flows

    def prune(self, state: SgState) -> list[Flow]:
        """Delete the conntrack entries of flows ``state`` would not admit; returns them."""
        flows = self.flows()
        if not flows:
            # A fresh host: nothing to judge, and no need to list its addresses.
            return []
        stale = stale_flows(state, flows, self.host_addresses())
        for flow in stale:
            # A flow that ended meanwhile is not an error ("0 flow entries").
            self._run(["conntrack", *delete_args(flow)])
        return stale

    def remove(self) -> None:
        """Delete the table (nothing else) if it exists."""
        self._nft.run(["delete", "table", FAMILY, TABLE])
        self._applied = None
