"""GcWatch: long collector pauses are logged, short ones are not; time comes from the test."""

from __future__ import annotations

import gc
import logging

import pytest

from telephony.process.gcwatch import GcWatch, install


def test_a_pause_over_the_threshold_is_logged_a_shorter_one_is_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    watch = GcWatch(threshold_ms=20, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="telephony.process.gcwatch"):
        watch("start", {"generation": 0})
        now[0] += 0.0199
        watch("stop", {"generation": 0, "collected": 3})
        watch("start", {"generation": 2})
        now[0] += 0.025
        watch("stop", {"generation": 2, "collected": 12})
    assert [r.getMessage() for r in caplog.records] == [
        "gc pause 25 ms (generation 2, 12 objects collected)"
    ]
    assert (watch.long_pauses, round(watch.longest_ms, 1)) == (1, 25.0)


def test_installed_once_and_it_sees_real_collections() -> None:
    watch = install(10_000)
    try:
        assert install(5) is watch
        before = watch.longest_ms
        gc.collect()
        assert watch.longest_ms >= before
        assert watch._started is None  # the real "stop" came after the real "start"
    finally:
        gc.callbacks.remove(watch)
