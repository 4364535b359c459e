"""The fan-out trace: per-port stamps of several processes joined into steps."""

from __future__ import annotations

from pathlib import Path

from l3fabric.bench import fanout_trace


def test_stages_join_the_processes_stamps_by_port(tmp_path: Path) -> None:
    prefix = str(tmp_path / "trace")
    # The server's and an agent's files; p2 stalled between publish and answer.
    server = [("commit", "p1", 1.000), ("read", "p1", 1.001), ("publish", "p1", 1.002),
              ("answer", "p1", 1.004), ("commit", "p2", 2.000), ("read", "p2", 2.001),
              ("publish", "p2", 2.002), ("answer", "p2", 2.102), ("stall", "50,1,2,3", 2.1)]  # fmt: skip
    agent = [("seen", "p1", 1.005), ("seen", "p2", 2.103)]
    for pid, lines in (("10", server), ("20", agent)):
        Path(f"{prefix}.{pid}").write_text("".join(f"{s} {i} {t}\n" for s, i, t in lines))
    steps = fanout_trace.stages(prefix, {"p1": 1.003, "p2": 2.001})
    assert steps["trace_publish_answer_p99_ms"] == 100.0
    assert steps["trace_publish_answer_slowest_ms"] == 100.0  # p2 is the slowest 1 %
    assert steps["trace_commit_created_p50_ms"] in (1.0, 2.0)
    assert steps["trace_answer_seen_p50_ms"] == 1.0
