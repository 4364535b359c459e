"""Whether a process is alive, by pid (the agents' children and the lab's processes)."""

from __future__ import annotations


def alive(pid: int) -> bool:
    """True if ``pid`` runs: a zombie has exited (its parent has just not reaped it yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
