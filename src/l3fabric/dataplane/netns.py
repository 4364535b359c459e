"""Network namespaces: entering a named one from a thread, creating and deleting them.

The agent runs inside its host's namespace and works on the current one; tests,
the lab and the benchmark drive namespaces from outside by name (a file under
/run/netns, as ``ip netns`` makes them). ``entered(name)`` switches only the
calling thread (setns(2) is per thread), so sockets opened and /proc/sys files
read inside the block belong to that namespace and the rest of the process is
unaffected.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

NETNS_RUN_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_libc = ctypes.CDLL(None, use_errno=True)


def path(name: str) -> str:
    """The bind-mount file of namespace ``name``; raises ValueError for a bad name."""
    if not _NAME.match(name):
        raise ValueError(f"bad network namespace name {name!r}: use letters, digits, '_.-'")
    return os.path.join(NETNS_RUN_DIR, name)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def entered(name: str | None) -> Iterator[None]:
    """Run the block in namespace ``name`` (this thread only); None means stay here."""
    if name is None:
        yield
        return
    target = os.open(path(name), os.O_RDONLY | os.O_CLOEXEC)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def exists(name: str) -> bool:
    return os.path.exists(path(name))


def create(name: str) -> None:
    """Create namespace ``name`` with its loopback up; error if it already exists."""
    path(name)
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, text=True)
    subprocess.run(
        ["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True, text=True
    )


def delete(name: str) -> None:
    """Delete namespace ``name`` if it exists (its interfaces go with it)."""
    if exists(name):
        subprocess.run(["ip", "netns", "delete", name], check=True, capture_output=True, text=True)


def command(name: str | None, argv: list[str]) -> list[str]:
    """``argv`` prefixed so that it runs in namespace ``name`` (or here for None)."""
    if name is None:
        return list(argv)
    path(name)
    return ["ip", "netns", "exec", name, *argv]
