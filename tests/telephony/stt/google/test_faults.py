"""Faults from Google: reconnect with bounded backoff, re-send unfinalized audio, count it all."""

import itertools
import time

import grpc
import pytest

from telephony.stt.google.streaming import GoogleSttSession
from tests.fakes.google_speech import (
    APPOINTMENT_SCRIPT,
    BYTES_PER_MS,
    Collector,
    FakeSpeechServer,
    play,
    script_words,
    speak,
)
from tests.telephony.stt.google.helpers import open_session

SCRIPT = APPOINTMENT_SCRIPT
WORDS = script_words(SCRIPT)


def open_faulty_session(
    server: FakeSpeechServer, sink: Collector, **config: object
) -> GoogleSttSession:
    config.setdefault("backoff_s", 0.05)
    config.setdefault("backoff_max_s", 0.4)
    # No jitter: the schedule is checked below.
    return open_session([server.host], sink, "CAfault", rand=lambda: 1.0, **config)


def assert_every_frame_accounted(session: GoogleSttSession) -> None:
    assert session.frames_in == session.frames_written + session.frames_dropped
    assert session.frames_pending == 0


@pytest.mark.parametrize(
    ("code", "details"),
    [
        (grpc.StatusCode.UNAVAILABLE, "Connection reset by peer"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"),
        (grpc.StatusCode.INTERNAL, "Internal error encountered."),
        (None, ""),  # the stream just ends, no status, no final
    ],
    ids=["unavailable", "deadline", "internal", "dropped"],
)
def test_stream_fault_mid_sentence_reconnects_without_losing_audio(
    code: grpc.StatusCode | None, details: str
) -> None:
    with FakeSpeechServer(endpoint_ms=500) as server:
        # 1.5 s into the audio: inside the first sentence's fourth word.
        server.fail_stream(code, details, after_audio_ms=1500)
        sink = Collector()
        session = open_faulty_session(server, sink)
        play(session, speak(SCRIPT))
        session.close(timeout=2.0)

    assert sink.final_words() == WORDS
    sink.check_partials(WORDS)
    assert session.reconnects == 1
    (_kind, detail), *_ = [e for e in sink.events if e[0] == "stt_reconnect"]
    assert ("stream closed by the server" if code is None else code.name) in detail
    assert session.frames_dropped == 0
    assert_every_frame_accounted(session)
    # The second stream started with the audio the first had not finalized (from 0 ms).
    first, second = server.streams[0], server.streams[1]
    assert second.audio[: len(first.audio)] == first.audio


def test_audio_timeout_reconnects_when_audio_comes_back() -> None:
    with FakeSpeechServer(endpoint_ms=500, audio_timeout_s=0.3) as server:
        sink = Collector()
        session = open_faulty_session(server, sink)
        audio = speak(SCRIPT)
        half = len(speak(SCRIPT[:2]))
        play(session, audio[:half])
        time.sleep(0.8)  # the RX side stalls: no audio reaches Google for longer than 0.3 s
        streams_during_pause = len(server.streams)
        play(session, audio[half:])
        session.close(timeout=2.0)

    assert sink.final_words() == WORDS
    assert server.streams[0].outcome.startswith("OUT_OF_RANGE: Audio Timeout Error")
    assert session.reconnects == 1
    assert any("Audio Timeout" in detail for kind, detail in sink.events if kind == "stt_reconnect")
    # No new stream while there was no audio: it would only have timed out again.
    assert streams_during_pause == 1
    assert len(server.streams) == 2
    assert_every_frame_accounted(session)


def test_outage_waits_in_the_bounded_queue_with_backoff_and_counts_drops() -> None:
    with FakeSpeechServer(endpoint_ms=500) as server:
        for _ in range(4):
            server.fail_stream(grpc.StatusCode.UNAVAILABLE, "The service is currently unavailable.")
        sink = Collector()
        session = open_faulty_session(server, sink, queue_frames=25, max_failures=100)
        play(session, speak(SCRIPT))
        session.close(timeout=2.0)

    assert session.reconnects == 4
    assert sink.event_kinds().count("stt_reconnect") == 4
    # Backoff doubles: 0.05, 0.1, 0.2, 0.4 s between attempts (no jitter here).
    opened = [log.opened_at for log in server.streams]
    gaps = [later - earlier for earlier, later in itertools.pairwise(opened)]
    for gap, expected in zip(gaps, [0.05, 0.1, 0.2, 0.4], strict=False):
        assert expected * 0.9 <= gap <= expected + 0.15
    # 0.75 s of outage at 4x speed is ~150 frames; the queue holds 25: the rest is counted.
    assert session.frames_dropped > 0
    assert_every_frame_accounted(session)
    # What was not dropped was recognized: the last sentences arrive whole.
    assert sink.final_words()[-5:] == WORDS[-5:]
    # Frames that waited out the outage went as a backlog, in requests still under 25 KB.
    assert max(max(log.request_sizes, default=0) for log in server.streams) <= 25 * 1024
    assert session.max_request_bytes > 320


def test_backlog_after_an_outage_is_sent_in_one_second_requests() -> None:
    with FakeSpeechServer(endpoint_ms=500) as server:
        server.fail_stream(grpc.StatusCode.UNAVAILABLE, "unavailable")
        sink = Collector()
        session = open_faulty_session(
            server, sink, queue_frames=250, backoff_s=1.0, backoff_max_s=1.0, max_failures=100
        )
        play(session, speak(SCRIPT), speed=4.0)
        session.close(timeout=2.0)

    assert sink.final_words() == WORDS  # nothing dropped: the queue held the whole outage
    assert session.frames_dropped == 0
    sizes = server.streams[1].request_sizes
    assert max(sizes) == 1000 * BYTES_PER_MS  # catching up: 1 s per request, far under 25 KB
    assert sizes[-3:-1] == [320, 320]  # then back to 40 ms batches
