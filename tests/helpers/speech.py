"""Synthetic speech for the VAD: a frame webrtcvad takes for speech at every aggressiveness."""

from __future__ import annotations

import numpy as np

from telephony.media.audio import FRAME_BYTES, pcm16_to_ulaw


def voiced_frame() -> bytes:
    """A 20 ms buzz at 125 Hz with 19 harmonics: webrtcvad takes it for speech at every level."""
    t = np.arange(FRAME_BYTES) / 8000
    wave = sum(np.sin(2 * np.pi * 125 * k * t) / k for k in range(1, 20))
    pcm = (wave / np.abs(wave).max() * 8000).astype("<i2").tobytes()
    return pcm16_to_ulaw(pcm)


VOICE = voiced_frame()
