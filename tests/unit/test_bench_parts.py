"""Benchmark options and parts: clear errors, merged results."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from l3fabric.bench.parts import OptionReader, alternated, run_parts


def test_options_are_checked_with_readable_errors() -> None:
    with pytest.raises(SystemExit, match=r"bench x: unknown option\(s\) \['colour'\]"):
        OptionReader("x", {"colour": "red"}, {"count"})
    reader = OptionReader("x", {"count": "12", "parts": "a"}, {"count"})
    assert reader.integer("count", 5, 1, 100) == 12
    assert OptionReader("x", {}, {"count"}).integer("count", 5, 1, 100) == 5
    with pytest.raises(SystemExit, match="count must be an integer, got 'lots'"):
        OptionReader("x", {"count": "lots"}, {"count"}).integer("count", 5, 1, 100)
    with pytest.raises(SystemExit, match=r"count must be within 1\.\.100, got 500"):
        OptionReader("x", {"count": "500"}, {"count"}).integer("count", 5, 1, 100)


def test_selected_parts_run_in_order_and_merge() -> None:
    seen: list[str] = []
    parts = {
        "a": lambda ctx: seen.append("a") or {"a": ctx},
        "b": lambda ctx: seen.append("b") or {"b": ctx * 2},
    }
    assert run_parts("x", {}, parts, 3) == {"a": 3, "b": 6}
    assert run_parts("x", {"parts": "b"}, parts, 1) == {"b": 2}
    assert seen == ["a", "b", "b"]
    with pytest.raises(SystemExit, match=r"unknown part\(s\) \['c'\]"):
        run_parts("x", {"parts": "c"}, parts, 1)


def test_two_measurements_are_sampled_in_turn() -> None:
    taken: list[str] = []

    def sample(name: str) -> Callable[[], str]:
        def take() -> str:
            taken.append(name)
            return f"{name}{taken.count(name)}"

        return take

    firsts, seconds = alternated(3, sample("a"), sample("b"))
    assert taken == ["a", "b", "a", "b", "a", "b"]  # never two of one kind in a row
    assert (firsts, seconds) == (["a1", "a2", "a3"], ["b1", "b2", "b3"])
