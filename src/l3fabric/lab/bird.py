"""Reading a lab router's (or host's) BIRD through its control socket."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Protocol:
    name: str
    proto: str
    state: str  # up, down, start
    info: str  # for BGP: Established, Active, Connect, ...

    @property
    def established(self) -> bool:
        return self.proto == "BGP" and self.info.startswith("Established")


def protocols(ctl: Path, timeout: float = 5.0) -> list[Protocol]:
    """``birdc show protocols``; an empty list when BIRD does not answer."""
    try:
        out = subprocess.run(
            ["birdc", "-s", str(ctl), "show", "protocols"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        ).stdout
    except (subprocess.TimeoutExpired, FileNotFoundError):
        return []
    return parse_protocols(out)


def parse_protocols(text: str) -> list[Protocol]:
    """Parse the table: Name Proto Table State Since Info (Since may hold a space)."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or fields[0] in ("BIRD", "Name") or fields[0].startswith("0"):
            continue
        name, proto, _table, state = fields[:4]
        # "Since" is a date and a time or just a time; Info follows it.
        rest = fields[4:]
        rest = rest[2:] if len(rest) > 1 and ":" in rest[1] else rest[1:]
        out.append(Protocol(name, proto, state, " ".join(rest)))
    return out
