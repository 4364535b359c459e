"""``l3fabric bench api`` runs end to end and reports what it promises."""

from __future__ import annotations

import pytest

from l3fabric.bench import api


def test_bench_api_small_run() -> None:
    result = api.run({"count": "20", "list": "60", "repeat": "1", "clients": "2"})
    for key in ("http_port_creates_per_s", "store_port_creates_per_s", "list_10k_ports_s"):
        assert result[key] > 0
    assert result["list_ports_count"] == 60
    assert result["http_over_store"] == pytest.approx(
        result["http_port_creates_per_s"] / result["store_port_creates_per_s"], rel=0.01
    )


def test_bench_api_rejects_bad_options() -> None:
    with pytest.raises(SystemExit, match="unknown option"):
        api.run({"nope": "1"})
    with pytest.raises(SystemExit, match="positive integer"):
        api.run({"count": "-3"})
