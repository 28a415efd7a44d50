"""The GO/NO-GO rules on made-up seconds (pure): each rule just inside and just past its line."""

from __future__ import annotations

from typing import Any

import pytest

from telephony.metrics.gonogo import (
    HINT_CLIMB,
    HINT_DROPS,
    HINT_FPS_IN,
    Thresholds,
    evidence,
    explain,
    judge,
    summary,
)
from telephony.metrics.histogram import Durations, Snapshot
from telephony.metrics.meters import SecondSample
from telephony.turns.transcript import TranscriptEvent
from tests.helpers.figures import sample

T0 = 1_800_000_000.0


def second(n: int, **figures: Any) -> SecondSample:
    """One healthy second `n` of call CA1, with `figures` overridden."""
    values: dict[str, Any] = {
        "fps_in": 50,
        "rx_q": 1,
        "rx_drops": 0,
        "rx_drops_total": 0,
        "write_ms": 0.1,
        "tx_fps": 50,
        "tx_q": 3,
        "tx_drops": 0,
        "tx_drops_total": 0,
        "send_q": 0,
    }
    values.update(figures)
    return SecondSample(call_sid="CA1", second=n, at=T0 + n, **values)


def run(n: int = 12, **per_second: Any) -> list[SecondSample]:
    """`n` seconds; a callable value in `per_second` is given the second's number."""
    return [
        second(s, **{k: (v(s) if callable(v) else v) for k, v in per_second.items()})
        for s in range(n)
    ]


def rules(verdict) -> list[str]:
    return [f.rule for f in verdict.findings]


def test_a_healthy_run_is_go_and_too_short_is_not_judged() -> None:
    assert judge(run(12)).go is True
    assert judge(run(12)).reasons == ()
    # Two partial edge seconds plus three steady ones is the shortest run judged.
    assert judge(run(5)).go is True
    assert judge(run(4)).go is None
    assert judge(run(4)).reasons == ("too short to judge",)


def test_one_dropped_frame_is_no_go_with_its_hint() -> None:
    assert judge(run(), rx_drops_total=0).go is True
    samples = run()
    samples[0] = second(0, rx_drops=1)  # even in the partial first second
    verdict = judge(samples)
    assert verdict.reasons == ("RX drops=1",)
    assert verdict.findings[0].hint == HINT_DROPS
    assert "STT write is slow or fps_in is not 50" in HINT_DROPS
    assert verdict.findings[0].seconds == (0,)
    # The stream's own running total wins over the samples (some may have been shed).
    assert judge(run(), rx_drops_total=1).reasons == ("RX drops=1",)


def test_rx_queue_over_twenty_is_no_go() -> None:
    samples = run()
    samples[5] = second(5, rx_q=20)
    assert judge(samples).go is True
    samples[5] = second(5, rx_q=21)
    assert judge(samples).reasons == ("RX q up to 21 (> 20)",)


@pytest.mark.parametrize("queue", ["rx_q", "tx_q"])
def test_a_queue_rising_over_the_run_is_no_go(queue: str) -> None:
    # Steady seconds 1..60 rising 1 frame every 6 s: exactly 10 frames/min, rising 9.8 frames.
    thresholds = Thresholds(q_slope_per_min=10.0, q_rise_min=5.0)
    at_line = run(62, **{queue: lambda s: s / 6})
    assert judge(at_line, thresholds=thresholds).go is True
    past_line = run(62, **{queue: lambda s: s / 5.9})
    verdict = judge(past_line, thresholds=thresholds)
    assert rules(verdict) == ["q_climb"]
    assert verdict.reasons[0].startswith(f"{queue} climbing (+10 frames/min over 59 s)")
    assert verdict.findings[0].hint == HINT_CLIMB


def test_a_short_runs_noise_is_not_a_climb_but_a_fast_climb_is() -> None:
    # 8 s: a reply filling the TX prefill at the end rises 5 frames, not more: not a climb.
    prefill = run(10, tx_q=lambda s: 5 if s >= 7 else 0)
    assert judge(prefill).go is True
    # The same fit rising 6 frames across the run is.
    fast = run(10, tx_q=lambda s: 6 * (s - 1) / 7)
    assert rules(judge(fast)) == ["q_climb"]
    # A burst that fills the queue and drains again is no climb, whatever its height.
    burst = run(12, tx_q=lambda s: 120 if 3 <= s <= 5 else 2)
    assert judge(burst).go is True


def test_a_single_high_reading_is_not_a_climb() -> None:
    samples = run(30)
    samples[-2] = second(28, tx_q=19)
    assert judge(samples).go is True


def test_fps_in_far_from_fifty_is_no_go() -> None:
    samples = run(22)  # 20 steady seconds: two off-rate ones are allowed (90 % on-rate)
    samples[3] = second(3, fps_in=45)  # on the line: on-rate
    samples[4] = second(4, fps_in=44)
    samples[5] = second(5, fps_in=56)
    assert judge(samples).go is True
    samples[6] = second(6, fps_in=30)
    verdict = judge(samples)
    assert verdict.reasons == ("fps_in off 50±5 in 3/20 s",)
    assert verdict.findings[0].hint == HINT_FPS_IN
    assert verdict.findings[0].seconds == (4, 5, 6)
    # 40 fps the whole time (a caller at 0.8x): every second is off.
    assert judge(run(12, fps_in=40)).reasons == ("fps_in off 50±5 in 10/10 s",)
    # The partial first and last seconds do not count.
    assert judge(run(12, fps_in=lambda s: 12 if s in (0, 11) else 50)).go is True


def test_tx_short_of_fifty_frames_or_dropping_is_no_go() -> None:
    assert judge(run(12, tx_fps=lambda s: 44 if s == 4 else 50)).go is True
    assert judge(run(12, tx_fps=lambda s: 44 if s in (4, 5) else 50)).reasons == (
        "TX fps off 50±5 in 2/10 s",
    )
    assert judge(run(12, tx_drops=lambda s: 1 if s == 3 else 0)).reasons == ("TX drops=1",)


def test_write_ms_p99_of_one_millisecond_is_no_go() -> None:
    assert judge(run(12, write_ms=lambda s: 0.99 if s == 4 else 0.1)).go is True
    verdict = judge(run(12, write_ms=lambda s: 1.0 if s == 4 else 0.1))
    assert verdict.reasons == ("write_ms p99=1.00 (>= 1)",)
    assert verdict.findings[0].seconds == (4,)
    # The nearest-rank p99 of 200 steady seconds ignores the two slowest.
    long = run(202, write_ms=lambda s: 5.0 if s in (10, 20) else 0.1)
    assert judge(long).go is True
    long[30] = second(30, write_ms=5.0)
    assert judge(long).reasons == ("write_ms p99=5.00 (>= 1)",)


def writes(fast: int, slow: int, *, fast_ms: float = 0.1, slow_ms: float = 1.2) -> Snapshot:
    times = Durations()
    for _ in range(fast):
        times.add(fast_ms)
    for _ in range(slow):
        times.add(slow_ms)
    return times.snapshot()


def test_with_every_write_kept_the_rule_takes_the_p99_of_all_writes() -> None:
    # 30 s at 50 writes a second; one slow write in each of three seconds: the per-second
    # maxima's p99 is a slow second (NO-GO), while 99 % of the writes were fast (GO).
    samples = run(30, write_ms=lambda s: 1.2 if s in (5, 15, 25) else 0.1)
    assert judge(samples).reasons == ("write_ms p99=1.20 (>= 1)",)
    assert judge(samples, writes=writes(1497, 3)).go is True
    # Fifteen slow writes of 1,500 are 1 %: still GO; sixteen are not.
    assert judge(samples, writes=writes(1485, 15)).go is True
    verdict = judge(samples, writes=writes(1484, 16))
    assert verdict.reasons == ("write_ms p99=1.20 (>= 1)",)
    assert verdict.findings[0].seconds == (5, 15, 25)  # the seconds whose maximum shows it
    # The bound is exact: a p99 of 0.99 ms passes, 1.00 ms does not.
    assert judge(samples, writes=writes(1000, 0, fast_ms=0.999)).go is True
    assert judge(samples, writes=writes(1000, 0, fast_ms=1.0)).go is False
    # No writes kept (e.g. no STT session ever opened): the per-second rule as before.
    assert judge(samples, writes=Durations().snapshot()).go is False


def test_a_run_with_speech_needs_a_partial_and_a_final() -> None:
    assert judge(run(), partials=1, finals=1).go is True
    assert judge(run(), partials=0, finals=1).reasons == (
        "0 PARTIAL and 1 FINAL (at least one of each expected)",
    )
    assert judge(run(), partials=3, finals=0).go is False
    # Not checked unless the counts are given (the admin badge does not know if anyone spoke).
    assert judge(run()).go is True


def test_thresholds_are_options() -> None:
    samples = run(12, write_ms=2.0, fps_in=42)
    loose = Thresholds(write_ms_p99_max=3.0, fps_tolerance=8)
    assert judge(samples, thresholds=loose).go is True
    assert rules(judge(samples)) == ["fps_in", "write_ms"]


def said(kind: str, text: str, at: float, **more: Any) -> TranscriptEvent:
    return TranscriptEvent(
        call_sid="CA1", kind=kind, text=text, utterance=1, offset_ms=0, at=at, **more
    )


def test_evidence_shows_the_seconds_each_rule_points_at_in_time_order() -> None:
    samples = run(30, write_ms=lambda s: 3.0 if s in (7, 8) else 0.1)
    samples[20] = second(20, rx_drops=2)
    events = [
        said("partial", "hello", T0 + 5.5),
        said("final", "hello there", T0 + 9.2, latency_ms=480.0, local=True),
    ]
    verdict = judge(samples, partials=1, finals=1)
    lines = evidence(verdict, samples, events)
    # Six seconds of [RX] and [TX] (the three at fault and one on each side of them) and the
    # two transcript lines: the 10-15 lines an operator can read by hand.
    assert len(lines) == 14
    shown = sorted({int(line.split(" ")[0].rsplit(":", 1)[1]) for line in lines if "[RX]" in line})
    assert shown == [6, 7, 8, 9, 19, 20]
    assert any("[RX] call=CA1 fps_in=50 q=1 drops=2 write_ms=0.10" in line for line in lines)
    assert any("write_ms=3.00" in line for line in lines)
    assert any("🟡 [PARTIAL] call=CA1 hello" in line for line in lines)
    assert any("✅ [FINAL] call=CA1 hello there (latency_ms=480, local)" in line for line in lines)
    stamps = [line.split(" ", 1)[0] for line in lines]
    assert stamps == sorted(stamps)
    assert lines[0] == "08:00:05 🟡 [PARTIAL] call=CA1 hello"


def test_evidence_of_a_go_run_spreads_over_it_within_the_limit() -> None:
    samples = run(120)
    lines = evidence(judge(samples), samples, [], limit=15)
    assert len(lines) == 14  # seven seconds of [RX] and [TX]
    assert sum("[RX]" in line for line in lines) == sum("[TX]" in line for line in lines)


def test_a_no_go_is_explained_with_each_reason_where_to_look_and_the_lines_that_show_it() -> None:
    samples = run(12)
    samples[5] = second(5, rx_drops=2)
    verdict = judge(samples, partials=1, finals=1)
    lines = explain("CA1", verdict, samples, problems=["the call failed: refused"])
    assert lines[:3] == [
        "CA1: NO-GO",
        "  - the call failed: refused",
        f"  - RX drops=2: {HINT_DROPS}",
    ]
    assert lines[3:] == [f"    {line}" for line in evidence(verdict, samples)]
    assert any("[RX] call=CA1 fps_in=50 q=1 drops=2" in line for line in lines[3:])


def test_a_go_is_explained_by_the_lines_that_show_it_and_a_problem_makes_it_no_go() -> None:
    samples = run(12)
    verdict = judge(samples)
    lines = explain("CA1", verdict, samples)
    assert lines[0] == "CA1: GO"
    assert lines[1:] == [f"    {line}" for line in evidence(verdict, samples)]
    assert explain("CA1", verdict, samples, problems=["x"])[:2] == ["CA1: NO-GO", "  - x"]
    assert explain("CA1", judge(run(4)), run(4))[:2] == [
        "CA1: NO-GO",
        "  - too short to judge: run longer: the first and last seconds are partial and do not "
        "count",
    ]


def test_the_summary_is_go_only_when_every_call_is() -> None:
    assert summary(3, 3) == "GO: 3/3 call(s) GO"
    assert summary(2, 3) == "NO-GO: 2/3 call(s) GO"


# --- The same rules on the seconds the calls' tests make --------------------------------------


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


def test_one_second_of_rx_queue_over_twenty_is_no_go() -> None:
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


def test_the_explanation_shows_the_spread_of_every_write_when_it_is_known() -> None:
    samples = run(12)
    times = writes(995, 5, slow_ms=3.0)
    lines = explain("CA1", judge(samples, writes=times), samples, writes=times)
    assert lines[:2] == [
        "CA1: GO",
        "  STT writes: 1000; p50 0.10 ms, p99 0.10 ms, max 3.00 ms; 5 at or over 1 ms",
    ]
    assert lines[2:] == [f"    {line}" for line in evidence(judge(samples), samples)]
