"""Pass metrics as the benchmarks read them: ``RUN_DIR/passes.json``, structured, no log lines."""

from __future__ import annotations

from l3fabric.agent.execute import PassMetrics, StepMetrics
from l3fabric.agent.passlog import PassLog
from l3fabric.bench.routes import _agent_passes


def _metrics(number: int, kind: str, ops: int = 0, errors: tuple[str, ...] = ()) -> PassMetrics:
    steps = {"observe": StepMetrics(seconds=0.001)}
    if ops or errors:
        steps["routes"] = StepMetrics(seconds=0.002, ops=ops, changes=2 * ops, errors=list(errors))
    return PassMetrics(number=number, kind=kind, started_at=1e9 + number, seconds=0.01, steps=steps)


def test_the_benchmarks_read_each_recorded_pass_with_its_steps(tmp_path) -> None:
    log = PassLog(tmp_path, keep=3)
    log.record(_metrics(1, "full"))  # idle, but full: kept (a change may have waited behind it)
    log.record(_metrics(2, "incremental"))  # did nothing: not kept
    log.record(_metrics(3, "incremental", ops=1))
    log.record(_metrics(4, "incremental", errors=("routes: refused",)))
    passes = _agent_passes(tmp_path)
    assert [(p["number"], p["kind"]) for p in passes] == [
        (1, "full"),
        (3, "incremental"),
        (4, "incremental"),
    ]
    routes = passes[1]["steps"]["routes"]
    assert (routes["seconds"], routes["ops"], routes["changes"]) == (0.002, 1, 2)
    assert passes[1]["operations"] == 1 and passes[2]["errors"] == ["routes: refused"]
    log.record(_metrics(5, "incremental", ops=1))  # the oldest goes
    assert [p["number"] for p in _agent_passes(tmp_path)] == [3, 4, 5]
