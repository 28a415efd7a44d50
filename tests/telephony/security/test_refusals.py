"""Refusals are logged at a bounded rate: the first of each kind, then a summary with counts."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from telephony.security.refusals import RefusalLog
from tests.helpers.clock import FakeClock


class Timers:
    """Stands in for the summary timer: the test runs what is due when it moves the clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.set = 0

    def __call__(self, delay_s: float, action: Callable[[], None]) -> None:
        self.set += 1
        self.clock.at(self.clock() + delay_s, action)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.refusals"]


def test_a_flood_writes_one_line_per_kind_and_one_summary(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="test.refusals")
    timers = Timers(clock)
    refusals = RefusalLog(
        logging.getLogger("test.refusals"), "webhook", window_s=10, clock=clock, schedule=timers
    )
    for n in range(10_000):
        refusals.refused("missing X-Twilio-Signature", f"request {n}")
        if n % 1000 == 0:
            refusals.refused("invalid X-Twilio-Signature", f"request {n}")
        clock.advance(0.0005)  # 10,000 in 5 s
    assert lines(caplog) == [
        "webhook refused: missing X-Twilio-Signature: request 0",
        "webhook refused: invalid X-Twilio-Signature: request 0",
    ]
    assert timers.set == 1  # one timer for the window, not one per refusal
    clock.advance(10)  # the window closes: its summary, with the counts by kind
    assert lines(caplog)[2:] == [
        "webhook: 10,008 more refused in the last 10 s, not logged one by one "
        "(missing X-Twilio-Signature 9,999, invalid X-Twilio-Signature 9)"
    ]
    assert refusals.total == {
        "missing X-Twilio-Signature": 10_000,
        "invalid X-Twilio-Signature": 10,
    }
    clock.advance(60)
    assert len(lines(caplog)) == 3  # nothing more to say


def test_each_window_logs_its_first_refusals_again(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="test.refusals")
    refusals = RefusalLog(
        logging.getLogger("test.refusals"),
        "stream",
        window_s=10,
        clock=clock,
        schedule=Timers(clock),
    )
    refusals.refused("no start in time", "a")
    refusals.refused("no start in time", "b")
    clock.advance(4)
    refusals.refused("no start in time", "c")
    clock.advance(7)  # past the window: its summary (2 quiet), then a new window
    refusals.refused("no start in time", "d")
    assert lines(caplog) == [
        "stream refused: no start in time: a",
        "stream: 2 more refused in the last 10 s, not logged one by one (no start in time 2)",
        "stream refused: no start in time: d",
    ]
    clock.advance(20)
    assert len(lines(caplog)) == 3  # "d" was the window's first: nothing quiet to sum up


def test_a_lone_refusal_is_logged_at_once_and_never_summed_up(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="test.refusals")
    timers = Timers(clock)
    refusals = RefusalLog(
        logging.getLogger("test.refusals"), "webhook", clock=clock, schedule=timers
    )
    refusals.refused("the call has ended", "CA1")
    clock.advance(100)
    assert lines(caplog) == ["webhook refused: the call has ended: CA1"]
    assert timers.set == 0
