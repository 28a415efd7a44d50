"""Twilio's playback buffer: marks echoed after their audio, clear, underruns (no sockets)."""

from __future__ import annotations

import math

from telephony.media.audio import FRAME_BYTES
from telephony.testing.caller.playback import TwilioPlayback
from tests.helpers.clock import FakeClock
from tests.helpers.fake_line import frame


def test_mark_is_echoed_only_after_the_audio_before_it_has_played() -> None:
    clock = FakeClock(0.0)
    playback = TwilioPlayback(clock)
    for code in range(5):  # a burst: 100 ms of audio arriving at once
        playback.receive_media(frame(code))
    playback.receive_mark("end")

    assert playback.advance(0.0) == []
    assert playback.advance(0.05) == []
    assert playback.frames_played == 2
    assert playback.advance(0.099) == []
    assert playback.advance(0.1) == ["end"]
    assert playback.frames_played == 5
    assert playback.buffered_frames == 0
    assert playback.advance(1.0) == []  # echoed once


def test_mark_with_nothing_before_it_is_due_at_once() -> None:
    playback = TwilioPlayback(FakeClock(0.0))
    playback.receive_mark("empty")
    assert playback.advance(0.0) == ["empty"]


def test_marks_wait_in_line_behind_their_own_audio() -> None:
    clock = FakeClock(0.0)
    playback = TwilioPlayback(clock)
    playback.receive_media(frame(1))
    playback.receive_mark("a")
    playback.receive_media(frame(2))
    playback.receive_media(frame(3))
    playback.receive_mark("b")

    assert playback.advance(0.02) == ["a"]
    assert playback.pending_marks == ["b"]
    assert playback.advance(0.059) == []
    assert playback.advance(0.06) == ["b"]


def test_clear_drops_buffered_audio_and_releases_every_pending_mark() -> None:
    clock = FakeClock(0.0)
    playback = TwilioPlayback(clock)
    for _ in range(10):
        playback.receive_media(frame(9))
    playback.receive_mark("half")
    for _ in range(10):
        playback.receive_media(frame(9))
    playback.receive_mark("end")
    assert playback.advance(0.04) == []

    clock.now = 0.04
    assert playback.receive_clear() == ["half", "end"]
    assert playback.frames_played == 2
    assert playback.frames_cleared == 18
    assert playback.buffered_frames == 0
    assert playback.advance(10.0) == []  # nothing left to play or echo


def test_audio_after_an_underrun_starts_when_it_arrives() -> None:
    clock = FakeClock(0.0)
    playback = TwilioPlayback(clock)
    playback.receive_media(frame(1))
    assert playback.advance(0.02) == []
    clock.now = 1.0  # the server went quiet for almost a second
    playback.receive_media(frame(2))
    playback.receive_mark("late")
    assert playback.advance(1.019) == []
    assert playback.advance(1.02) == ["late"]


def test_a_payload_longer_than_a_frame_plays_for_its_own_length() -> None:
    clock = FakeClock(0.0)
    playback = TwilioPlayback(clock)
    playback.receive_media(bytes(FRAME_BYTES * 3))  # 60 ms in one message
    playback.receive_mark("m")
    assert playback.advance(0.05) == []
    assert playback.advance(0.06) == ["m"]
    assert math.isclose(playback.played_s, 0.06)


def test_playback_counts_the_deepest_buffer() -> None:
    playback = TwilioPlayback(FakeClock(0.0))
    for _ in range(7):
        playback.receive_media(frame(1))
    playback.advance(0.1)
    playback.receive_media(frame(1))
    assert playback.max_buffered == 7
    assert playback.frames_received == 8
