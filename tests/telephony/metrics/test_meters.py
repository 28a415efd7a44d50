"""One second's figures: which fields are figures, and the operators' log lines."""

from __future__ import annotations

from telephony.metrics.meters import FIGURES, SecondSample
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
