"""The caller's frames: base64 payloads, silence around speech, key presses, when each is due."""

from __future__ import annotations

import base64
import math

import pytest

from telephony.media.audio import FRAME_BYTES, SILENCE_FRAME
from telephony.testing.caller.frames import (
    SILENCE_B64,
    dtmf_plan,
    encode_frames,
    frame_plan,
    frames_due,
)


@pytest.mark.parametrize(
    ("elapsed", "speed", "expected"),
    [
        (-0.001, 1.0, 0),
        (0.0, 1.0, 1),
        (0.009, 1.0, 1),  # a tick half a frame early does not send the next frame
        (0.019, 1.0, 2),  # a tick a millisecond early does
        (0.021, 1.0, 2),  # a tick a millisecond late does not send two
        (0.2, 1.0, 11),
        (100.0, 1.0, 50),  # never past the end
        (0.02, 2.0, 3),
        (0.02, math.inf, 50),
    ],
)
def test_frames_due(elapsed: float, speed: float, expected: int) -> None:
    assert frames_due(elapsed, speed=speed, total=50) == expected


def test_encode_frames_pads_the_last_frame_and_is_shared() -> None:
    clip = bytes(range(1, 101)) * 4  # 400 bytes: two frames and a half
    encoded = encode_frames(clip)
    frames = [base64.b64decode(p) for p in encoded]
    assert [len(f) for f in frames] == [FRAME_BYTES] * 3
    assert b"".join(frames)[:400] == clip
    assert frames[2][80:] == SILENCE_FRAME[80:]
    assert encode_frames(clip) is encoded


def test_frame_plan_puts_silence_around_the_speech() -> None:
    clip = bytes(range(1, 101)) * 4  # two frames and a half: three frames
    plan = frame_plan(clip, lead_s=0.1, tail_s=0.04)
    assert plan == [SILENCE_B64] * 5 + list(encode_frames(clip)) + [SILENCE_B64] * 2
    assert base64.b64decode(SILENCE_B64) == SILENCE_FRAME
    assert frame_plan(b"", lead_s=0.0, tail_s=0.0) == []


def test_dtmf_plan_puts_each_key_press_before_the_frame_of_its_time() -> None:
    plan = dtmf_plan([(0.5, "7"), (0.0, "1"), (0.03, "2"), (0.04, "3"), (-1.0, "#")])
    # 0.5 s is frame 25; 0.03 s falls inside frame 1, so it goes before frame 2.
    assert plan == [(0, "#"), (0, "1"), (2, "2"), (2, "3"), (25, "7")]
    assert dtmf_plan([]) == []
