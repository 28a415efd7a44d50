"""The shared statistics: nearest-rank percentiles, the interval histogram, the slope."""

from __future__ import annotations

import pytest

from telephony.metrics.stats import (
    IntervalHistogram,
    decode_histogram,
    histogram_percentile,
    percentile,
    slope,
)


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


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([5.0], 99) == 5.0
    assert percentile(reversed(values), 99) == 99.0  # unsorted input is sorted first
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_intervals_are_measured_as_their_distance_from_twenty_ms() -> None:
    stats = IntervalHistogram(period_s=0.020)
    for t in (0.0, 0.020, 0.041, 0.060, 0.110):  # off by 0, 1, 1 and 30 ms
        stats.tick(t)
    p50, p99, worst = stats.summary()
    assert stats.count == 4
    assert p50 == pytest.approx(1.1)  # 1 ms, to its 0.1 ms bucket's upper edge
    assert p99 == pytest.approx(30.1)
    assert worst == pytest.approx(30.0)  # the maximum is exact
    assert IntervalHistogram().summary() == (0.0, 0.0, 0.0)


def test_the_slope_is_least_squares_in_frames_per_second() -> None:
    assert slope([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2.0)
    assert slope([(0, 5), (1, 0), (2, 5), (3, 0)]) == pytest.approx(-1.0)
    assert slope([(4, 9)]) == 0.0
    assert slope([(1, 1), (1, 5)]) == 0.0
