"""Where an agent's pass metrics go: ``RUN_DIR/passes.json`` and a small summary in its heartbeat.

Both agents (host and gateway) keep the passes that did something (an
operation or an error), the last ``PASS_HISTORY`` of them, in
``passes.json`` for tools and benchmarks (structured: no log parsing), and
send the last pass's ``summary`` in the heartbeat's ``agent`` dict.
"""

from __future__ import annotations

import collections
import json
import logging
import os
from pathlib import Path
from typing import Any

from l3fabric.agent.execute import PassMetrics

log = logging.getLogger(__name__)

# How many passes (those that did something) ``passes.json`` keeps.
PASS_HISTORY = 50
# The heartbeat's free-form fields are bounded (16 KiB, model/bounded.py):
# the summary keeps its error list short, and each error shorter.
SUMMARY_ERRORS = 5
SUMMARY_ERROR_CHARS = 300


def summary(metrics: PassMetrics) -> dict[str, Any]:
    """The last pass for the heartbeat: seconds per step, operations, the first errors (small)."""
    errors = metrics.errors
    return {
        "number": metrics.number,
        "kind": metrics.kind,
        "at": round(metrics.started_at, 3),
        "seconds": round(metrics.seconds, 6),
        "steps": {name: round(s.seconds, 6) for name, s in metrics.steps.items()},
        "ops": metrics.operations,
        "errors": [e[:SUMMARY_ERROR_CHARS] for e in errors[:SUMMARY_ERRORS]],
        "error_count": len(errors),
    }


class PassLog:
    """The recent passes that did something, and full ones, kept in ``run_dir/passes.json``."""

    def __init__(self, run_dir: str | Path, keep: int = PASS_HISTORY) -> None:
        self.path = Path(run_dir) / "passes.json"
        self.history: collections.deque[dict[str, object]] = collections.deque(maxlen=keep)

    def record(self, metrics: PassMetrics) -> None:
        """Keep ``metrics`` (if the pass did something, or was full) and rewrite the file.

        Idle full passes too: a change that waited behind one shows (bench routes).
        """
        if not (metrics.operations or metrics.errors or metrics.kind == "full"):
            return
        self.history.append(metrics.to_json())
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"passes": list(self.history)}))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.debug("writing %s failed: %s", self.path, exc)
