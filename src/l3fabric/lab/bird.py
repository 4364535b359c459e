"""Reading a lab router's (or host's) BIRD through its control socket."""

from __future__ import annotations

from pathlib import Path

from l3fabric.routing.bird_control import BirdControl, BirdError, ProtocolStatus


def protocols(ctl: Path, timeout: float = 5.0) -> list[ProtocolStatus]:
    """``show protocols all``; an empty list when BIRD does not answer (not running yet)."""
    try:
        return BirdControl(str(ctl), timeout_s=timeout).protocols()
    except (OSError, BirdError, ValueError):
        return []
