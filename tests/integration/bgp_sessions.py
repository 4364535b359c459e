"""Whether BGP sessions stayed up: the tests that restart or reconfigure a speaker ask it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from l3fabric.routing.bird_control import ProtocolStatus

# BIRD prints a session's last change as wall-clock time worked out, at each query,
# from its cached monotonic clock: a busy BIRD prints the same moment a millisecond
# or so apart (seen in CI). A session that really went down and up moves by seconds.
SAME_MOMENT_S = 0.1


def established_since(protocols: Iterable[ProtocolStatus]) -> dict[str, datetime]:
    """Established BGP session -> when it last changed state."""
    return {p.name: datetime.fromisoformat(p.since) for p in protocols if p.established}


def same_sessions(after: dict[str, datetime], before: dict[str, datetime]) -> bool:
    """The same sessions are up, and none of them changed state in between."""
    return after.keys() == before.keys() and all(
        abs((after[name] - before[name]).total_seconds()) <= SAME_MOMENT_S for name in before
    )
