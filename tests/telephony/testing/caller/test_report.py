"""A call's report: what counts as a failure and how it is described."""

from __future__ import annotations

import pytest

from telephony.testing.caller.report import CallError, CallReport, calls_summary, progress_line


def test_summary_names_the_failure() -> None:
    report = CallReport(call_sid="CA1", stream_sid="MZ1", error="voice webhook answered HTTP 500")
    assert "FAILED (voice webhook answered HTTP 500)" in report.summary()
    assert not report.ok


@pytest.mark.parametrize(("code", "ok"), [(1000, True), (1001, True), (1005, True), (1006, False)])
def test_only_a_clean_close_is_ok(code: int, ok: bool) -> None:
    report = CallReport(call_sid="CA1", stream_sid="MZ1", close_code=code)
    assert report.ok is ok
    if ok:
        report.raise_for_error()
    else:
        with pytest.raises(CallError, match=f"WebSocket closed with code {code}"):
            report.raise_for_error()


def test_calls_summary_adds_up_and_keeps_the_worst() -> None:
    reports = [
        CallReport(
            call_sid="CA1", stream_sid="MZ1", close_code=1000, frames_sent=50,
            frames_received=40, jitter_p99_ms=2.5, marks_echoed=1, marks_received=2,
            first_media_ms=12.0, send_late_max_ms=3.0,
        ),
        CallReport(
            call_sid="CA2", stream_sid="MZ2", error="boom", frames_sent=10,
            jitter_p99_ms=7.25, first_media_ms=30.0,
        ),
    ]  # fmt: skip
    assert calls_summary(reports) == (
        "calls=2 ok=1 failed=1 sent=60 recv=40 jitter_ms p50/p99/max(worst call)=0.0/7.2/0.0 "
        "marks=1/2 first_audio_ms(worst)=30 send_late_max_ms=3.0"
    )
    assert "first_audio_ms(worst)=- " in calls_summary([CallReport("CA3", "MZ3")])


def test_progress_line_counts_the_calls_up_so_far() -> None:
    live = [
        CallReport("CA1", "MZ1", frames_sent=50, frames_received=45, frames_played=40),
        CallReport("CA2", "MZ2", frames_sent=49, clears_received=1, marks_received=1),
    ]
    assert progress_line(3, live, 5) == (
        "[  3s] calls=2/5 sent=99 recv=45 played=40 marks=0/1 clears=1"
    )
