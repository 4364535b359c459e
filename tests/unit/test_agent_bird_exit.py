"""The agent hears of its BIRD's exit at once, whoever BIRD's parent is (a pidfd)."""

from __future__ import annotations

import subprocess
import threading
import time

from l3fabric.agent.bird_exit import BirdExitWatch


def test_an_exit_is_noticed_at_once_and_the_next_process_is_watched() -> None:
    first = subprocess.Popen(["sleep", "60"])
    procs = [first]
    running = {"pid": first.pid}
    exits: list[float] = []
    woken = threading.Event()

    def on_exit() -> None:
        exits.append(time.monotonic())
        running["pid"] = None  # the agent's next pass starts another
        woken.set()

    watch = BirdExitWatch(lambda: running["pid"], on_exit, wait_s=5.0)
    watch.start()
    try:
        time.sleep(0.2)  # the thread waits on the pidfd now
        killed = time.monotonic()
        first.kill()
        assert woken.wait(2.0)
        assert exits[0] - killed < 0.5  # not the 5 s wait: the pidfd woke it
        first.wait()

        second = subprocess.Popen(["sleep", "60"])
        procs.append(second)
        woken.clear()
        running["pid"] = second.pid
        time.sleep(0.3)  # picked up after IDLE_S
        second.terminate()
        assert woken.wait(2.0)
        second.wait()
        assert len(exits) == 2
    finally:
        watch.stop()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_no_bird_and_a_running_one_are_no_exit() -> None:
    calls: list[int] = []
    assert BirdExitWatch(lambda: None, lambda: calls.append(1)).step() is False
    proc = subprocess.Popen(["sleep", "60"])
    try:
        assert BirdExitWatch(lambda: proc.pid, lambda: calls.append(1), wait_s=0.05).step() is False
    finally:
        proc.kill()
        proc.wait()
    assert calls == []


def test_a_bird_the_pid_file_no_longer_names_has_exited_even_if_the_pidfd_is_silent() -> None:
    """A killed multithreaded BIRD's pidfd was seen not to wake: the pid file decides then."""
    proc = subprocess.Popen(["sleep", "60"])  # still running: its pidfd stays silent
    answers = iter([proc.pid, None])
    calls: list[int] = []
    try:
        watch = BirdExitWatch(lambda: next(answers), lambda: calls.append(1), wait_s=0.05)
        assert watch.step() is True and calls == [1]
        # Between two steps: watched, then gone (zombie, or the file names another BIRD).
        answers = iter([proc.pid, proc.pid, 4242, 4242])
        watch = BirdExitWatch(lambda: next(answers), lambda: calls.append(2), wait_s=0.05)
        assert watch.step() is False
        assert watch.step() is True and calls == [1, 2]
    finally:
        proc.kill()
        proc.wait()
