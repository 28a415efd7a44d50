"""Streams that end before taking new audio: counted as failures, backed off, replays trimmed.

The session's clock is a FakeClock here: a backoff waits until the test moves time on, so a
session that opens streams without waiting shows as many streams while time stands still.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import pytest

from telephony.stt.google.rules import MIN_LIVE_MS_BEFORE_LENGTH_END
from telephony.stt.google.streaming import GoogleSttSession
from tests.fakes.google_speech import (
    AUDIO_TIMEOUT_DETAILS,
    DURATION_DETAILS,
    VOCABULARY,
    Collector,
    FakeSpeechServer,
    speak,
)
from tests.helpers.clock import FakeClock
from tests.telephony.stt.google.helpers import open_session

FRAME = 160


def wait_until(condition: Callable[[], bool], timeout_s: float = 2.0) -> bool:
    """Poll (real time) until `condition` holds: the gRPC side runs in real time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def write(session: GoogleSttSession, audio: bytes) -> None:
    for i in range(0, len(audio), FRAME):
        session.write(audio[i : i + FRAME])


@pytest.mark.parametrize(
    ("code", "details"),
    [
        (grpc.StatusCode.OUT_OF_RANGE, DURATION_DETAILS.format(limit=305)),
        (grpc.StatusCode.OUT_OF_RANGE, AUDIO_TIMEOUT_DETAILS),
        (grpc.StatusCode.UNAVAILABLE, "Connection reset by peer"),
        (None, ""),  # the stream just ends, status OK, nothing said
    ],
    ids=["length", "audio-timeout", "unavailable", "dropped"],
)
def test_streams_google_ends_at_once_wait_for_a_backoff(
    code: grpc.StatusCode | None, details: str
) -> None:
    # Google ends every new stream before it takes a byte, while the caller's audio keeps coming:
    # each new stream must wait a backoff, which the stopped clock holds. Without one the engine
    # opens stream after stream in real time.
    clock = FakeClock()
    with FakeSpeechServer() as server:
        for _ in range(20):
            server.fail_stream(code, details)
        sink = Collector()
        session = open_session(
            [server.host], sink, "CAdur", clock=clock, rand=lambda: 1.0, max_failures=100
        )
        try:
            for _ in range(60):  # 1.2 s of audio in ~0.3 s of real time, the clock stopped
                session.write(bytes([0xFF]) * FRAME)
                time.sleep(0.005)
            assert len(server.streams) == 1, [log.outcome for log in server.streams]
            assert sink.event_kinds() == ["stt_reconnect"]
            clock.advance(0.2)  # the first backoff is 0.25 s (no jitter): not over yet
            time.sleep(0.1)
            assert len(server.streams) == 1
            # Past it, one more stream (which fails too and waits 0.5 s): steps, as the driver
            # may have read the clock for its deadline a moment late.
            for _ in range(10):
                clock.advance(0.05)
                if wait_until(lambda: len(server.streams) == 2, timeout_s=0.2):
                    break
            time.sleep(0.1)
            assert len(server.streams) == 2
        finally:
            session.close(timeout=1.0)
    assert session.rotations == 0


def test_a_replay_longer_than_the_stream_limit_does_not_loop() -> None:
    # Issue 12: a stream ended (OUT_OF_RANGE) right after it opened because the replayed backlog
    # was longer than the server's stream limit, and the engine opened the next one at once,
    # replaying the same audio: 1,600 streams in 8 s. Here the server takes 1 s of audio per
    # stream and the caller talks for 4 s without a pause (no final, so nothing is cut).
    clock = FakeClock()
    talk = [list(VOCABULARY[:15])]
    audio = speak(talk, gap_ms=60, pause_ms=0, lead_ms=0)
    with FakeSpeechServer(stream_audio_limit_s=1.0) as server:
        sink = Collector()
        session = open_session(
            [server.host], sink, "CAloop", clock=clock, rand=lambda: 1.0, max_failures=100
        )
        try:
            write(session, audio)  # 3.9 s at once: the queue holds it, streams take it
            # Then 6 s of the call in 20 ms steps of the session's clock, real time between.
            for _ in range(300):
                clock.advance(0.02)
                session.write(bytes([0xFF]) * FRAME)
                time.sleep(0.004)
            opened = len(server.streams)
        finally:
            session.close(timeout=1.0)
    kinds = sink.event_kinds()
    print(f"streams opened: {opened}, reconnects: {session.reconnects}")
    # Bounded: a stream either took MIN_LIVE_MS_BEFORE_LENGTH_END of new audio (~10 s in all)
    # or waited out a backoff; the replay was trimmed until it fitted (halving from ~4 s to
    # under the 1 s limit: a few failures). Before the fix: 180 streams here, still counting.
    audio_ms = session.frames_in * 20
    assert opened <= 1 + audio_ms / MIN_LIVE_MS_BEFORE_LENGTH_END + 5, opened
    assert "stt_replay_trimmed" in kinds
    assert 1 <= session.reconnects == kinds.count("stt_reconnect") <= 5
    assert opened <= 1 + session.rotations + session.reconnects
    # Once the replay fitted, streams took new audio again: Google's length cuts were rotations.
    last_trim = max(i for i, kind in enumerate(kinds) if kind == "stt_replay_trimmed")
    assert "stt_rotation" in kinds[last_trim:]
