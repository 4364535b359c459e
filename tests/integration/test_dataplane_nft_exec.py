"""nft in process (libnftables): atomic like ``nft -f``, nft's own errors, in the right namespace."""

from __future__ import annotations

import subprocess

from l3fabric.dataplane import nft_exec
from l3fabric.dataplane.nft_exec import NftRunner

from .conftest import in_ns

TABLE = "table inet l3f-exec {\n\tset s { type ipv4_addr; }\n}\n"


def test_the_binding_is_there() -> None:
    # The Makefile links Debian's binding into the venv: the agents use it.
    assert nft_exec.in_process()


def test_a_script_applies_whole_or_not_at_all_with_nfts_message(netns) -> None:
    host = netns("nftx")
    runner = NftRunner(host)
    assert runner.run(["-f", "-"], TABLE).returncode == 0
    # Its second statement fails: the first must not be applied either.
    bad = (
        "add element inet l3f-exec s { 10.0.0.1 }\nadd element inet l3f-exec nosuch { 10.0.0.2 }\n"
    )
    done = runner.run(["-f", "-"], bad)
    by_program = subprocess.run(
        ["ip", "netns", "exec", host, "nft", "-f", "-"], input=bad, capture_output=True, text=True
    )
    assert done.returncode != 0 and by_program.returncode != 0
    # nft's message and the statement it points at (the program adds "/dev/stdin:2:...").
    assert "Error: No such file or directory" in done.stderr
    assert done.stderr.splitlines()[1:] == by_program.stderr.splitlines()[1:]
    assert "10.0.0.1" not in in_ns(host, "nft", "list", "set", "inet", "l3f-exec", "s").stdout


def test_changes_by_others_are_seen_and_the_root_namespace_is_untouched(netns) -> None:
    host = netns("nfty")
    runner = NftRunner(host)
    assert runner.run(["-f", "-"], TABLE).returncode == 0
    assert in_ns(host, "nft", "list", "table", "inet", "l3f-exec").returncode == 0
    # Only in that namespace (reading the root namespace's tables changes nothing).
    assert "l3f-exec" not in NftRunner(None).run(["list", "tables"]).stdout
    # The context's cache follows changes made by another process (drift).
    in_ns(host, "nft", "add", "element", "inet", "l3f-exec", "s", "{ 10.9.9.9 }")
    assert "10.9.9.9" in runner.run(["-j", "list", "table", "inet", "l3f-exec"]).stdout
    in_ns(host, "nft", "delete", "table", "inet", "l3f-exec")
    assert runner.run(["list", "table", "inet", "l3f-exec"]).returncode != 0
