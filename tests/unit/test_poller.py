"""The background poll every agent and the controller use (l3fabric/poller.py)."""

from __future__ import annotations

import threading
import time

import pytest

from l3fabric.poller import Poller, pause


@pytest.mark.parametrize(
    ("interval", "took", "slow", "expected"),
    [
        (0.1, 0.02, 0.5, 0.08),  # the rest of the interval
        (0.1, 0.3, 0.5, 0.3),  # a slow step: at least as long again
        (0.1, 120.0, 0.5, 0.5),  # one that waited minutes: not minutes again
        (2.0, 0.3, 0.5, 1.7),  # a long interval is kept
        (1.0, 1.0, 0.0, 0.0),  # plain periodic: a step as long as the interval, none
    ],
)
def test_the_pause_after_a_step(interval, took, slow, expected) -> None:
    assert pause(interval, took, slow) == pytest.approx(expected)


def _until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_steps_repeat_a_failing_one_is_logged_and_stop_ends_the_thread(caplog) -> None:
    calls: list[float] = []

    def step() -> None:
        calls.append(time.monotonic())
        if len(calls) == 2:
            raise RuntimeError("a bug")

    poller = Poller("test-poll", step, 0.01)
    poller.start()
    poller.start()  # running already: no second thread
    _until(lambda: len(calls) >= 4)
    poller.stop()
    assert not any(t.name == "test-poll" for t in threading.enumerate())
    assert "test-poll: poll failed" in caplog.text and "a bug" in caplog.text
    ended = len(calls)
    time.sleep(0.05)
    assert len(calls) == ended


def test_wake_runs_the_next_step_at_once_and_the_interval_is_read_each_time() -> None:
    calls: list[float] = []
    interval = [60.0]

    def read_interval() -> float:
        if interval[0] < 0:
            raise OSError("the store is down")
        return interval[0]

    poller = Poller("test-wake", lambda: calls.append(time.monotonic()), read_interval)
    poller.start()
    try:
        _until(lambda: len(calls) == 1)  # the first step at once, then a minute's pause
        poller.wake()
        _until(lambda: len(calls) == 2)
        interval[0] = -1  # unknown: the last value read (60 s) holds
        poller.wake()
        _until(lambda: len(calls) == 3)
        interval[0] = 0.01
        poller.wake()
        _until(lambda: len(calls) >= 8)  # the new interval
    finally:
        poller.stop()


def test_a_stopped_poller_starts_again_with_one_thread() -> None:
    running = threading.Event()
    poller = Poller("test-again", running.set, 0.01)
    poller.start()
    _until(running.is_set)
    poller.stop(timeout=0)  # not waited for
    assert poller.stopping
    poller.start()  # waits for the old thread, then one new one
    running.clear()
    _until(running.is_set)
    assert [t.name for t in threading.enumerate()].count("test-again") == 1
    poller.stop()
