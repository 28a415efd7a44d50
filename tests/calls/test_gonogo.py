"""The GO/NO-GO rules, judged on made-up seconds (pure, no database)."""

from __future__ import annotations

from calls.charts import call_charts
from calls.gonogo import judge, percentile
from tests.calls.factories import sample


def healthy(n: int = 10) -> list:
    return [sample("CA1", s) for s in range(n)]


def test_a_healthy_call_is_go() -> None:
    verdict = judge(healthy())
    assert verdict.go is True
    assert verdict.reasons == ()


def test_too_short_to_judge() -> None:
    assert judge(healthy(4)).go is None
    assert judge([]).go is None


def test_rx_drops_are_no_go_even_in_the_first_second() -> None:
    samples = healthy()
    samples[0] = sample("CA1", 0, rx_drops=1, rx_drops_total=1)
    assert judge(samples).reasons == ("RX drops=1",)
    # The stream's own running total wins over the samples (some may have been shed).
    assert judge(healthy(), rx_drops_total=5).reasons == ("RX drops=5",)


def test_a_climbing_queue_is_no_go() -> None:
    samples = [sample("CA1", s, tx_q=s * 3) for s in range(12)]
    assert judge(samples).go is False
    assert judge(samples).reasons[0].startswith("tx_q climbing")
    # A prompt that fills the TX queue and drains it again is not a climb.
    burst = [sample("CA1", s, tx_q=120 if 3 <= s <= 5 else 2) for s in range(12)]
    assert judge(burst).go is True


def test_rx_queue_over_twenty_is_no_go() -> None:
    samples = healthy()
    samples[5] = sample("CA1", 5, rx_q=21)
    assert judge(samples).reasons == ("RX q up to 21 (> 20)",)


def test_fps_in_swinging_away_from_fifty_is_no_go() -> None:
    samples = healthy(22)
    samples[3] = sample("CA1", 3, fps_in=44)
    assert judge(samples).go is True  # one second in twenty is within the rule
    samples[7] = sample("CA1", 7, fps_in=58)
    samples[9] = sample("CA1", 9, fps_in=30)
    assert judge(samples).reasons == ("fps_in off 50±5 in 3/20 s",)
    # The partial first and last seconds do not count.
    edges = healthy()
    edges[0] = sample("CA1", 0, fps_in=10)
    edges[-1] = sample("CA1", 9, fps_in=12)
    assert judge(edges).go is True


def test_slow_stt_writes_are_no_go() -> None:
    samples = healthy()
    samples[4] = sample("CA1", 4, write_ms=1.0)
    assert judge(samples).reasons == ("write_ms p99=1.00 (>= 1)",)


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([5.0], 99) == 5.0


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
