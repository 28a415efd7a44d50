"""The GO/NO-GO check's pieces: the speech plan, the figures it reads, how it judges each call."""

from __future__ import annotations

from datetime import timedelta

import pytest

from calls import services
from calls.gonogo_run import (
    BYTES_PER_S,
    CallFigures,
    CallResult,
    CheckOptions,
    CheckResult,
    Watcher,
    judge_calls,
    lead_silence,
    speech_plan,
    utterance_audio,
)
from calls.models import Call
from calls.rows import StreamEnd
from telephony.media.audio import SILENCE_FRAME
from telephony.metrics.gonogo import DEFAULT_THRESHOLDS
from telephony.testing.caller import CallReport, write_ulaw_wav
from tests.helpers.calls import START, started
from tests.helpers.figures import said, sample


def test_the_speech_plan_fills_the_call_with_utterances_and_pauses() -> None:
    one_second, half = b"\x00" * 8000, b"\x00" * 4000
    audio, tail, spoken = speech_plan([one_second, half], duration_s=10, lead_s=2, pause_s=1.5)
    # 2 s listening, then 1 | 1.5 | 0.5 | 1.5 | 1 = 5.5 s; another 1.5 + 0.5 + 1 would not fit.
    assert spoken == 3
    assert tail == pytest.approx(2.5)
    assert len(audio) == int(5.5 * 8000)
    assert audio[8000 : 8000 + 12000] == SILENCE_FRAME * 75  # the pause after the first
    # Room for an utterance and the second after it is enough, with no pause at all.
    assert speech_plan([one_second], duration_s=3, lead_s=1, pause_s=2)[1:] == (1.0, 1)
    assert speech_plan([one_second], duration_s=2.9, lead_s=1, pause_s=2)[2] == 0


def test_the_caller_listens_to_the_greeting_unless_the_check_is_too_short() -> None:
    greeting, first = b"\x00" * (3 * BYTES_PER_S), b"\x00" * BYTES_PER_S
    # The greeting and 0.7 s after it, when the first utterance and a second after it fit.
    assert lead_silence(first, greeting=greeting, pause_s=2, duration_s=10) == pytest.approx(3.7)
    # A short check talks over the greeting's end: the first utterance must fit ...
    assert lead_silence(first, greeting=greeting, pause_s=2, duration_s=4) == pytest.approx(2.0)
    # ... but listens half a second at least.
    assert lead_silence(first, greeting=greeting, pause_s=0.5, duration_s=1) == 0.5
    assert lead_silence(first, greeting=b"", pause_s=2, duration_s=10) == pytest.approx(0.7)


def test_the_callers_say_the_wav_files_given_instead_of_the_texts(tmp_path) -> None:
    # Scripted audio (runs of one mu-law value; 0xFF silence) survives the WAV as it is.
    utterances = [bytes([0x10]) * 1600 + b"\xff" * 480, bytes([0x11, 0x12]) * 800]
    paths = []
    for i, audio in enumerate(utterances):
        paths.append(str(tmp_path / f"{i}.wav"))
        write_ulaw_wav(paths[-1], audio)
    assert utterance_audio(CheckOptions(wavs=paths, texts=["not spoken"])) == utterances


def healthy(call_sid: str, *, engine: str = "whisper", **call: object) -> CallFigures:
    """Return the figures of a call the server recorded whole: 8 good seconds, what was said."""
    row = Call(call_sid=call_sid, stt_engine=engine, ended_at=START, rx_drops=0, shed={})
    for name, value in call.items():
        setattr(row, name, value)
    return CallFigures(
        call_sid,
        seconds={s: sample(call_sid, s) for s in range(8)},
        said=[said(call_sid, "partial", "hel"), said(call_sid, "final", "hello")],
        call=row,
    )


def clean(call_sid: str) -> CallReport:
    return CallReport(call_sid=call_sid, stream_sid="MZ" + call_sid, close_code=1000)


def judged(
    figures: CallFigures, report: CallReport | None = None, transcripts: str = "auto"
) -> CallResult:
    sid = figures.call_sid
    reports = [report or clean(sid)]
    (result,) = judge_calls(
        {sid: figures}, reports, transcripts=transcripts, thresholds=DEFAULT_THRESHOLDS
    )
    return result


def test_a_whole_healthy_call_is_go() -> None:
    result = judged(healthy("CA1"))
    assert result.go
    assert result.problems == ()
    assert CheckResult(results=[result], reports=[], caller_cpu=0.01).go


def test_a_failed_call_or_a_missing_end_is_no_go_whatever_its_figures() -> None:
    failed = CallReport(call_sid="CA1", stream_sid="MZ1", close_code=1011, error="refused")
    result = judged(healthy("CA1"), failed)
    assert result.verdict.go is True
    assert not result.go
    assert result.problems == ("the call failed: refused",)
    unended = judged(healthy("CA2", ended_at=None))
    assert unended.problems == ("the server did not record the call's end",)
    never = judged(CallFigures("CA3", seconds=healthy("CA3").seconds))
    assert never.problems == ("the server did not record the call's end",)
    assert not CheckResult(results=[judged(healthy("CA4")), never], reports=[], caller_cpu=0).go


def test_shed_rows_make_the_figures_incomplete() -> None:
    result = judged(healthy("CA1", shed={"metric": 2}))
    assert result.problems == ("the recorder shed rows {'metric': 2}: figures incomplete",)


def test_transcripts_are_asked_of_every_engine_but_none() -> None:
    silent = healthy("CA1")
    silent.said.clear()
    assert judged(silent).verdict.reasons == (
        "0 PARTIAL and 0 FINAL (at least one of each expected)",
    )
    assert judged(silent, transcripts="no").go
    sink = healthy("CA2", engine="none")
    sink.said.clear()
    assert judged(sink).go
    assert not judged(sink, transcripts="yes").go


def test_the_ended_calls_drop_total_is_judged() -> None:
    result = judged(healthy("CA1", rx_drops=4))
    assert result.verdict.reasons == ("RX drops=4",)


@pytest.mark.django_db
def test_the_watcher_gathers_each_calls_new_rows_poll_by_poll() -> None:
    first, second = started("CA-1"), started("CA-2")
    ids = {"CA-1": first.pk, "CA-2": second.pk}
    watcher = Watcher(["CA-1", "CA-2"])
    assert watcher.poll() == ([], [])
    services.metric_samples_create(samples=[sample("CA-1", 0), sample("CA-2", 0)], call_ids=ids)
    services.transcripts_create(events=[said("CA-2", "partial", "hi")], call_ids=ids)
    seconds, events = watcher.poll()
    assert [(s.call_sid, s.second) for s in seconds] == [("CA-1", 0), ("CA-2", 0)]
    assert [e.text for e in events] == ["hi"]
    services.metric_samples_create(samples=[sample("CA-1", 1)], call_ids=ids)
    seconds, events = watcher.poll()
    assert [(s.call_sid, s.second) for s in seconds] == [("CA-1", 1)]
    assert events == []
    assert sorted(watcher.calls["CA-1"].seconds) == [0, 1]
    assert watcher.calls["CA-2"].count("partial") == 1

    assert watcher.load_calls() == 0
    services.call_ended(
        StreamEnd(call_sid="CA-1", reason="stop", ended_at=START + timedelta(seconds=2), totals={})
    )
    assert watcher.load_calls() == 1
    assert watcher.calls["CA-1"].call is not None
