"""A call laid out for review: cues of both sides, WebVTT, plain text (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from calls.models import Call, CallEvent, Transcript
from calls.review import Cue, call_cues, clock, line_cues, transcript_text, webvtt
from calls.selectors import Utterance

START = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)


def event(kind: str, detail: str, **data) -> CallEvent:
    return CallEvent(kind=kind, detail=detail, data=data, at=START)


def final(text: str, at_s: float, latency_ms: float | None) -> Transcript:
    return Transcript(kind="final", text=text, at=START + timedelta(seconds=at_s),
                      latency_ms=latency_ms, utterance=1, offset_ms=0)  # fmt: skip


def test_a_prompt_lasts_its_length_or_until_the_barge_in_that_cut_it():
    cues = line_cues(
        [
            event("prompt", "Hello there", label="greeting", offset_ms=0, duration_ms=4000),
            event("prompt", "Anything else?", label="prompt2", offset_ms=9000, duration_ms=1500),
            event("barge_in", "greeting", heard_ms=2000, total_ms=4000),
            event("dtmf", "5"),
        ]
    )
    assert cues == [
        Cue("line", 0, 2000, "Hello there", label="greeting", interrupted=True),
        Cue("line", 9000, 10500, "Anything else?", label="prompt2"),
    ]


def test_an_utterance_ends_where_its_final_says_the_speech_ended():
    call = Call(call_sid="CA1", started_at=START)
    u = Utterance(number=1, offset_ms=1500, final=final("שלום", 4.0, 400.0))
    pending = Utterance(number=2, offset_ms=6000)  # no FINAL, no partial yet
    cues = call_cues(call, [u, pending], [event("prompt", "Hi", label="g", offset_ms=0)])
    assert [(c.side, c.start_ms, c.end_ms, c.final) for c in cues] == [
        ("line", 0, 800, True),  # a prompt too short to read gets the shortest cue
        ("caller", 1500, 3600, True),
        ("caller", 6000, 6800, False),
    ]


def test_webvtt_cues_are_valid_and_name_their_speaker():
    vtt = webvtt(
        [
            Cue("line", 0, 2000, "Hello <b>&</b>"),
            Cue("caller", 3_723_004, 3_725_000, "a --> b\nנו"),
        ]
    )
    assert vtt == (
        "WEBVTT\n\n"
        "line-1\n00:00:00.000 --> 00:00:02.000\n<v line>Hello &lt;b&gt;&amp;&lt;/b&gt;\n\n"
        "caller-2\n01:02:03.004 --> 01:02:05.000\n<v caller>a → b נו\n"
    )


def test_the_plain_transcript_reads_in_time_order():
    call = Call(call_sid="CA1", from_number="+972501112233", to_number="+97231234567",
                started_at=START)  # fmt: skip
    text = transcript_text(
        call,
        [
            Cue("line", 0, 2000, "שלום", interrupted=True),
            Cue("caller", 2500, 4000, "hi", final=False),
        ],
    )
    assert text.splitlines()[-2:] == [
        "[0:00.0] line: שלום (interrupted)",
        "[0:02.5] caller: hi (no FINAL)",
    ]
    assert clock(61_250) == "1:01.2"
