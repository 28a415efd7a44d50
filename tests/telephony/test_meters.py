"""The opt-in tick histogram (RX_CADENCE_STATS): exact buckets, percentiles, a log round trip."""

from __future__ import annotations

import pytest

from telephony.meters import IntervalHistogram, decode_histogram, histogram_percentile


def test_deviations_from_the_period_land_in_tenth_of_a_millisecond_buckets() -> None:
    hist = IntervalHistogram(period_s=0.020)
    # Intervals of 20, 20.25, 19.25 and 25.05 ms: off by 0, 0.25, 0.75 and 5.05 ms.
    for t in (0.0, 0.020, 0.04025, 0.0595, 0.08455):
        hist.tick(t)
    assert hist.count == 4
    assert hist.max_ms == pytest.approx(5.05)
    assert decode_histogram(hist.encode()) == {0: 1, 2: 1, 7: 1, 50: 1}
    assert hist.percentile(50) == pytest.approx(0.3)  # rank 2 of 4: bucket 2's upper edge
    assert hist.percentile(100) == pytest.approx(5.1)


def test_the_last_bucket_takes_everything_past_the_range() -> None:
    hist = IntervalHistogram(period_s=0.020, max_ms=10.0)
    hist.tick(0.0)
    hist.tick(1.0)  # 980 ms late
    assert hist.max_ms == pytest.approx(980.0)
    assert decode_histogram(hist.encode()) == {100: 1}


def test_histograms_of_many_calls_merge_through_their_log_text() -> None:
    merged: dict[int, int] = {}
    for text in ("0:98,30:2", "0:99,200:1"):
        for bucket, count in decode_histogram(text).items():
            merged[bucket] = merged.get(bucket, 0) + count
    assert merged == {0: 197, 30: 2, 200: 1}
    assert histogram_percentile(merged, 50) == pytest.approx(0.1)
    assert histogram_percentile(merged, 99) == pytest.approx(3.1)  # rank 198 of 200
    assert histogram_percentile(merged, 100) == pytest.approx(20.1)
    assert histogram_percentile({}, 99) == 0.0
