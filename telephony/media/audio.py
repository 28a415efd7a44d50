"""G.711 mu-law at 8 kHz in 20 ms frames: conversion, resampling and re-framing (pure, no I/O)."""

import audioop  # the standard library up to 3.12; from 3.13 the audioop-lts backport

SAMPLE_RATE = 8000  # Twilio Media Streams: audio/x-mulaw, 8000 Hz, mono
FRAME_MS = 20  # Twilio packetization: one media message carries 20 ms
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000  # 160 mu-law bytes = 160 samples
ULAW_SILENCE = b"\xff"  # mu-law code for digital silence (0xFF decodes to 0)
SILENCE_FRAME = ULAW_SILENCE * FRAME_BYTES


def ulaw_to_pcm16(ulaw: bytes) -> bytes:
    """Decode mu-law bytes to little-endian signed 16-bit PCM."""
    return audioop.ulaw2lin(ulaw, 2)


def pcm16_to_ulaw(pcm16: bytes) -> bytes:
    """Encode little-endian signed 16-bit PCM as mu-law bytes."""
    return audioop.lin2ulaw(pcm16, 2)


def resample_pcm16(pcm16: bytes, from_rate: int, to_rate: int) -> bytes:
    """Resample mono PCM16 (linear interpolation with audioop's filter state)."""
    if from_rate == to_rate:
        return pcm16
    converted, _state = audioop.ratecv(pcm16, 2, 1, from_rate, to_rate, None)
    return converted


def split_frames(ulaw: bytes, pad: bool = True) -> list[bytes]:
    """Cut mu-law audio into 160-byte frames; the last one is padded with silence if `pad`."""
    frames = [ulaw[i : i + FRAME_BYTES] for i in range(0, len(ulaw), FRAME_BYTES)]
    if frames and len(frames[-1]) < FRAME_BYTES:
        if pad:
            frames[-1] = frames[-1] + ULAW_SILENCE * (FRAME_BYTES - len(frames[-1]))
        else:
            frames.pop()
    return frames


class Reframer:
    """Re-cut payloads of any length into exact 20 ms frames, carrying a short tail forward.

    Twilio sends 160 bytes per media message; anything else is a framing quirk that must not
    lose audio, so the remainder waits for the next payload instead of being dropped or padded.
    """

    __slots__ = ("_tail", "irregular")

    def __init__(self) -> None:
        self._tail = b""
        self.irregular = 0  # payloads that were not exactly one frame

    def push(self, payload: bytes) -> list[bytes]:
        """Return the whole frames now available (usually exactly one)."""
        if not self._tail and len(payload) == FRAME_BYTES:
            return [payload]
        self.irregular += 1
        data = self._tail + payload
        whole = len(data) - len(data) % FRAME_BYTES
        self._tail = data[whole:]
        return [data[i : i + FRAME_BYTES] for i in range(0, whole, FRAME_BYTES)]

    def flush(self) -> bytes:
        """Return the leftover tail padded to a whole frame (empty if there is none)."""
        tail, self._tail = self._tail, b""
        if not tail:
            return b""
        return tail + ULAW_SILENCE * (FRAME_BYTES - len(tail))
