"""What a caller sends, frame by frame: base64 payloads, key presses between them, when each is due.

Pure arithmetic on 20 ms frames; the clock that drives it is `telephony.testing.caller.ticker`.
"""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Sequence

from telephony.media.audio import FRAME_MS, SILENCE_FRAME, split_frames

FRAME_S = FRAME_MS / 1000
SILENCE_B64 = base64.b64encode(SILENCE_FRAME).decode("ascii")


@functools.lru_cache(maxsize=16)
def encode_frames(audio: bytes) -> tuple[str, ...]:
    """Cut mu-law audio into 20 ms frames and base64 each one (cached: calls share a clip)."""
    return tuple(base64.b64encode(frame).decode("ascii") for frame in split_frames(audio))


def frame_plan(audio: bytes, lead_s: float, tail_s: float) -> list[str]:
    """Return the base64 payload of every frame the caller will send, silence included."""
    lead = [SILENCE_B64] * round(lead_s / FRAME_S)
    tail = [SILENCE_B64] * round(tail_s / FRAME_S)
    return [*lead, *encode_frames(audio), *tail]


def dtmf_plan(dtmf: Sequence[tuple[float, str]]) -> list[tuple[int, str]]:
    """Return (index of the frame the key press goes before, digit) pairs, in time order.

    A press at t seconds goes before the first frame whose timestamp is t or later.
    """
    return sorted((max(0, math.ceil(t / FRAME_S - 1e-9)), digit) for t, digit in dtmf)


def frames_due(elapsed_s: float, *, speed: float, total: int) -> int:
    """Return how many frames should have been sent `elapsed_s` after the first one.

    Frame k is due at k * 20 ms / speed. Half a frame of tolerance keeps a tick that wakes a
    millisecond early or late from sending 0 frames and then 2.
    """
    if elapsed_s < 0:
        return 0
    if math.isinf(speed):
        return total
    return min(total, math.floor(elapsed_s * speed / FRAME_S + 0.5) + 1)
