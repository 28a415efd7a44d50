"""The write-time histogram: exact at 10 µs steps, cheap to read, round-trips through text."""

from __future__ import annotations

import pytest

from telephony.metrics.histogram import Durations, Snapshot
from telephony.metrics.stats import percentile


def durations(*values: float) -> Durations:
    d = Durations()
    for v in values:
        d.add(v)
    return d


def test_the_p99_of_all_values_is_the_nearest_rank_to_ten_microseconds() -> None:
    values = [0.12] * 990 + [0.5] * 9 + [3.0]
    snap = durations(*values).snapshot()
    assert snap.count == 1000
    assert snap.percentile(99) == 0.12 == percentile(values, 99)
    assert snap.percentile(99.5) == 0.5
    assert snap.percentile(100) == 3.0
    assert snap.max_ms == 3.0
    assert snap.sum_ms == pytest.approx(sum(values))


def test_a_bound_on_a_ten_microsecond_step_is_exact_either_side() -> None:
    snap = durations(0.999, 1.0, 1.001, 4.99, 5.0).snapshot()
    assert snap.at_or_above(1.0) == 4
    assert snap.at_or_above(5.0) == 1
    assert durations(0.999).snapshot().percentile(99) < 1.0
    assert durations(1.0).snapshot().percentile(99) >= 1.0


def test_values_past_the_fine_range_land_in_coarse_buckets() -> None:
    snap = durations(12.0, 30.0, 3000.0, 0.2).snapshot()
    assert snap.count == 4
    assert snap.percentile(100) == 2500.0  # the coarse bucket's lower edge
    assert snap.max_ms == 3000.0  # exact
    assert snap.at_or_above(10.0) == 3
    assert snap.at_or_above(50.0) == 1


def test_cumulative_counts_are_prometheus_buckets() -> None:
    snap = durations(0.05, 0.2, 0.2, 0.9, 2.0, 30.0).snapshot()
    assert snap.cumulative([0.1, 0.25, 1.0, 2.5, 25.0, 50.0]) == [1, 3, 4, 5, 5, 6]


def test_an_empty_histogram_reads_as_nothing() -> None:
    snap = Durations().snapshot()
    assert (snap.count, snap.percentile(99), snap.at_or_above(1.0)) == (0, 0.0, 0)


def test_encode_decode_and_merge() -> None:
    a = durations(0.1, 0.1, 1.5, 40.0).snapshot()
    back = Snapshot.decode(a.encode())
    assert (back.fine, back.coarse, back.max_ms) == (a.fine, a.coarse, a.max_ms)
    assert back.sum_ms == pytest.approx(a.sum_ms, abs=1e-3)
    both = a.merge(durations(0.3).snapshot())
    assert both.count == 5
    assert both.percentile(100) == 25.0
    with pytest.raises(ValueError, match="not an encoded histogram"):
        Snapshot.decode("garbage")
