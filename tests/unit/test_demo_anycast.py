"""The demo's anycast bars: one line per member, its share of the connections as a bar."""

from __future__ import annotations

from collections import Counter

from l3fabric.lab.anycast_traffic import Spread
from l3fabric.lab.demo_anycast import BAR, bars


def test_bars_show_each_members_share_and_failures() -> None:
    got = Spread(Counter({"web1": 75, "web3": 150}), failed=75)
    lines = bars(got, {"web1": "r1-h1", "web2": "r1-h1", "web3": "r2-h2"})
    assert len(lines) == 4 and lines[-1].strip() == "failed: 75"
    assert "█" * (BAR // 2) in lines[2] and "50.0 % (150)" in lines[2]
    assert "25.0 % (75)" in lines[0] and "█" not in lines[1] and "0.0 % (0)" in lines[1]
