"""The caller's audio: speech from text or a WAV file, and what it heard saved as a WAV."""

from __future__ import annotations

import audioop  # deprecated in 3.12, removed in 3.13; the machines run 3.11 (see DESIGN.md)
import wave
from pathlib import Path

from telephony.media.audio import SAMPLE_RATE, pcm16_to_ulaw, resample_pcm16, ulaw_to_pcm16


def speech_audio(text: str) -> bytes:
    """Render `text` as caller audio (8 kHz mu-law) with the espeak engine."""
    from telephony.tts import get_tts_engine  # lazy: only callers that speak need the engine

    return get_tts_engine("espeak").synthesize(text)


def greeting_s(text: str) -> float:
    """Return how long the server plays the greeting `text`, rendered as the server renders it."""
    if not text:
        return 0.0
    from telephony.tts import get_prompt_cache  # lazy: the TTS engine loads on first use

    return len(get_prompt_cache().render(text)) / SAMPLE_RATE


def read_wav_as_ulaw(path: str | Path) -> bytes:
    """Read a PCM WAV of any rate, width and channel count as 8 kHz mono mu-law."""
    with wave.open(str(path), "rb") as wav:
        channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
        data = wav.readframes(wav.getnframes())
    if width == 1:
        data = audioop.bias(data, 1, -128)  # 8-bit WAV is unsigned; audioop expects signed
    if width != 2:
        data = audioop.lin2lin(data, width, 2)
    if channels == 2:
        data = audioop.tomono(data, 2, 0.5, 0.5)
    elif channels != 1:
        raise ValueError(f"{path}: {channels} channels; only mono and stereo are supported")
    return pcm16_to_ulaw(resample_pcm16(data, rate, SAMPLE_RATE))


def write_ulaw_wav(path: str | Path, ulaw: bytes) -> None:
    """Write mu-law audio as a 16-bit PCM WAV at 8 kHz (plays anywhere)."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(ulaw_to_pcm16(ulaw))
