"""Running nft commands: in process through libnftables, else the ``nft`` program.

``NftRunner(netns).run(args, stdin)`` takes the ``nft`` command line we use
(``-f -`` with a script on ``stdin``, ``-j list table ...``, ``delete table
...``) and answers like ``subprocess.run`` would (``returncode``, ``stdout``,
``stderr``: nft's own messages either way). With Debian's python3-nftables
binding importable (the Makefile links it into the venv) the command runs
in this process through one libnftables context per runner, opened inside
``netns``: no process start, no ``ip netns exec``. A change of one port
costs ~0.2-2 ms instead of 10-25 ms as an ``nft`` process
(docs/benchmarks.md). Without the binding, the ``nft`` program runs.

A context is not thread-safe: each runner serialises its own calls (the
agent's guard and security-group tables have one runner each).

A context keeps what its last command read or parsed (libnftables' cache)
until the next command finds the ruleset changed and frees it: after a
listing of 10,000 set elements that free cost the next one-element add
~4-6 ms (0.2-0.3 ms otherwise). A command that moved more than
``BIG_COMMAND`` bytes therefore frees its context at once, so the cost
stays with the command that is O(host) anyway (a full pass's listing or
whole-table load), and the next command opens a fresh one.
"""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass
from typing import Any

from l3fabric.dataplane import netns as netns_mod

_TIMEOUT_S = 30
BIG_COMMAND = 64 * 1024  # bytes in or out; see the module's docstring

try:
    import nftables as _nftables  # Debian's python3-nftables (ctypes over libnftables.so.1)
except ImportError:  # pragma: no cover - depends on the machine
    _nftables = None


@dataclass(frozen=True)
class NftResult:
    """What one nft command answered (the fields of ``subprocess.CompletedProcess`` we read)."""

    returncode: int
    stdout: str
    stderr: str


def in_process() -> bool:
    """Whether nft commands run through libnftables (True) or as ``nft`` processes."""
    return _nftables is not None


class NftRunner:
    """nft commands in namespace ``netns`` (None: the current one)."""

    def __init__(self, netns: str | None = None, library: bool | None = None) -> None:
        self.netns = netns
        self.library = in_process() if library is None else library and in_process()
        self._ctx: Any = None
        self._lock = threading.Lock()

    def run(self, args: list[str], stdin: str | None = None) -> NftResult:
        """``nft *args`` (``-f -``: the script ``stdin``; ``-j``: JSON output)."""
        if not self.library:
            done = subprocess.run(
                netns_mod.command(self.netns, ["nft", *args]),
                input=stdin,
                capture_output=True,
                text=True,
                timeout=_TIMEOUT_S,
            )
            return NftResult(done.returncode, done.stdout, done.stderr)
        json = args[:1] == ["-j"]
        rest = args[1:] if json else args
        with self._lock, netns_mod.entered(self.netns):
            # The context's netlink socket belongs to the namespace it was opened in.
            if self._ctx is None:
                self._ctx = _nftables.Nftables()
            self._ctx.set_json_output(json)
            if rest == ["-f", "-"]:
                rc, out, err = _script(self._ctx, stdin or "")
            else:
                rc, out, err = self._ctx.cmd(" ".join(rest))
            if len(out) + len(stdin or "") > BIG_COMMAND:
                self._ctx = None  # freed now (nft_ctx_free), with its cache
        return NftResult(0 if rc == 0 else 1, out, err)


def _script(ctx: Any, script: str) -> tuple[int, str, str]:
    """Run ``script`` as ``nft -f`` would: one transaction, errors pointing at its line.

    From a file, not a buffer: libnftables 1.0.6 shows the first line of a
    buffer under every error, whichever statement failed.
    """
    fd = os.memfd_create("nft-script", os.MFD_CLOEXEC)
    try:
        data = memoryview(script.encode())
        while data:
            data = data[os.write(fd, data) :]
        path = f"/proc/self/fd/{fd}"
        rc, out, err = ctx.cmd_from_file(path)
    finally:
        os.close(fd)
    return rc, out, err.replace(f"{path}:", "/dev/stdin:")
