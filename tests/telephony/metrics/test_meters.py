"""One second's figures: which fields are figures, the log lines, and the meter that makes them."""

from __future__ import annotations

from telephony.metrics.meters import FIGURES, SecondMeter, SecondSample
from tests.helpers.figures import T0


def test_every_field_but_the_call_the_second_and_the_time_is_a_figure() -> None:
    assert FIGURES == (
        "fps_in", "rx_q", "rx_drops", "rx_drops_total", "write_ms",
        "tx_fps", "tx_q", "tx_drops", "tx_drops_total", "send_q", "mark_rtt_ms",
    )  # fmt: skip


def test_a_second_gives_its_figures_by_name_and_its_log_lines() -> None:
    s = SecondSample(
        call_sid="CA1", second=4, at=T0, fps_in=49, rx_q=3, rx_drops=1, rx_drops_total=2,
        write_ms=0.214, tx_fps=50, tx_q=2, tx_drops=0, tx_drops_total=0, send_q=1,
    )  # fmt: skip
    figures = s.figures()
    assert list(figures) == list(FIGURES)
    assert (figures["fps_in"], figures["write_ms"], figures["mark_rtt_ms"]) == (49, 0.214, None)
    assert s.rx_line() == "[RX] call=CA1 fps_in=49 q=3 drops=1 write_ms=0.21"
    assert s.tx_line() == "[TX] call=CA1 fps=50 q=2 drops=0"


def figures(**totals: int) -> dict:
    base = {
        "frames_in": 0,
        "rx_drops_total": 0,
        "frames_out": 0,
        "tx_drops_total": 0,
        "rx_q": 0,
        "write_ms": 0.0,
        "tx_q": 0,
        "send_q": 0,
        "mark_rtt_ms": None,
    }
    return {**base, **totals}


def test_a_sample_carries_what_changed_since_the_previous_one() -> None:
    meter = SecondMeter("CA1", start=10.0)
    assert not meter.due(10.99)
    assert meter.due(11.0)
    first = meter.sample(11.0, at=1000.0, **figures(frames_in=50, frames_out=50, rx_q=3))
    second = meter.sample(
        12.0, at=1001.0, **figures(frames_in=99, rx_drops_total=2, frames_out=100, tx_drops_total=1)
    )
    assert (first.second, first.fps_in, first.tx_fps, first.rx_q) == (1, 50, 50, 3)
    assert (second.second, second.fps_in, second.tx_fps) == (2, 49, 50)
    assert (second.rx_drops, second.rx_drops_total, second.tx_drops, second.tx_drops_total) == (
        2,
        2,
        1,
        1,
    )


def test_after_a_long_stall_the_schedule_realigns_instead_of_bursting() -> None:
    meter = SecondMeter("CA1", start=0.0)
    meter.sample(5.5, at=0.0, **figures())  # due at 1.0, reported 4.5 s late
    assert not meter.due(6.4)  # no burst of the missed seconds ...
    assert meter.due(6.5)  # ... the next report is a second after this one


def test_a_short_delay_keeps_the_schedule() -> None:
    meter = SecondMeter("CA1", start=0.0)
    meter.sample(1.9, at=0.0, **figures())  # due at 1.0, reported 0.9 s late
    assert meter.due(2.0)  # the next is still due at 2.0
