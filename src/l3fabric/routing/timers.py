"""BGP session timers and options, read from the fabric config: one reading for every agent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Timers:
    """Hold and keepalive times, BFD and graceful restart, as the fabric config sets them.

    Failover is BFD's job (100 ms x 3: a dead peer is noticed in ~0.3 s).
    Graceful restart stays on (Calico's default): a restarting BIRD keeps
    its kernel routes (``persist``) and its peers wait for it instead of
    flushing on a mere TCP close. It cannot keep a dead host attracting
    traffic while BFD runs: BFD down ends the session hard (the template
    says ``bfd on``, never ``bfd graceful``) and BIRD 2.0.12 then drops the
    peer's routes, stale or not. Measured (docs/anycast.md): host silent
    0.26-0.36 s, host BIRD killed 0.27 s (one run), host link down < 0.01 s. An
    agent restart never restarts BIRD, so it loses nothing either way.
    Without BFD a peer whose BIRD died stays stale up to
    ``graceful_restart_s`` (docs/measurements.md: 120 s); keep BFD on.
    """

    hold_s: int = 90
    keepalive_s: int = 30
    bfd: bool = True
    bfd_interval_ms: int = 100
    bfd_multiplier: int = 3
    graceful_restart: bool = True
    graceful_restart_s: int = 120
    # Session options of the fabric config: TCP-MD5 password (every fabric
    # session), import limit (a gateway's fabric sessions; None: none).
    password: str | None = None
    import_limit: int | None = None

    @classmethod
    def from_fabric(cls, fabric: dict[str, Any]) -> Timers:
        bfd = fabric.get("bfd") or {}
        gr = fabric.get("graceful_restart") or {}
        return cls(
            hold_s=int(fabric.get("hold_s", 90)),
            keepalive_s=int(fabric.get("keepalive_s", 30)),
            bfd=bool(bfd.get("enabled", True)),
            bfd_interval_ms=int(bfd.get("interval_ms", 100)),
            bfd_multiplier=int(bfd.get("multiplier", 3)),
            graceful_restart=bool(gr.get("enabled", True)),
            graceful_restart_s=int(gr.get("restart_time_s", 120)),
            password=fabric.get("bgp_password") or None,
            import_limit=int(fabric.get("bgp_import_limit", 20_000)) or None,
        )

    def bird_fields(self) -> dict[str, Any]:
        """These timers as ``BirdConfig`` keyword arguments (BFD per peer is the caller's)."""
        return {
            "bfd_interval_ms": self.bfd_interval_ms,
            "bfd_multiplier": self.bfd_multiplier,
            "graceful_restart": self.graceful_restart,
            "graceful_restart_time": self.graceful_restart_s,
            "hold_time": self.hold_s,
            "keepalive_time": self.keepalive_s,
        }
