"""The call page's charts, drawn from made-up seconds."""

from __future__ import annotations

from calls.charts import call_charts
from tests.helpers.figures import sample


def healthy(n: int = 10) -> list:
    return [sample("CA1", s) for s in range(n)]


def test_the_charts_draw_every_second_and_mark_drops() -> None:
    samples = healthy(30)
    samples[12] = sample("CA1", 12, rx_drops=4)
    rates, queues, drops, writes = (str(c) for c in call_charts(samples))
    assert rates.count("<polyline") == 2
    assert len(rates.split("<polyline")[1].split('points="')[1].split('"')[0].split()) == 30
    assert queues.count("<polyline") == 3
    assert drops.count("<rect x") == 1 + 1  # the plot area and the one second with drops
    assert "<title>12 s: 4</title>" in drops
    assert "write_ms" in writes
    assert call_charts([]) == []
