"""The caller's WAV input and output: any PCM WAV in, 8 kHz mu-law out, and back."""

from __future__ import annotations

import audioop
import math
import wave
from pathlib import Path

import pytest

from telephony.media.audio import ulaw_to_pcm16
from telephony.testing.caller.audio import (
    greeting_s,
    read_wav_as_ulaw,
    speech_audio,
    write_ulaw_wav,
)
from tests.helpers.fake_line import AUDIO


def test_wav_round_trip_keeps_every_byte(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    write_ulaw_wav(path, AUDIO)
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.getnframes() == len(AUDIO)
    assert read_wav_as_ulaw(path) == AUDIO


def _tone_pcm16(rate: int, seconds: float, hz: float = 440.0, amplitude: int = 8000) -> bytes:
    n = int(rate * seconds)
    samples = (int(amplitude * math.sin(2 * math.pi * hz * i / rate)) for i in range(n))
    return b"".join(s.to_bytes(2, "little", signed=True) for s in samples)


def test_read_wav_converts_stereo_16khz_to_8khz_mono(tmp_path: Path) -> None:
    mono = _tone_pcm16(16000, 0.5)
    stereo = audioop.tostereo(mono, 2, 1.0, 1.0)
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(stereo)

    ulaw = read_wav_as_ulaw(path)
    assert abs(len(ulaw) - 4000) <= 2  # half a second at 8 kHz
    pcm = ulaw_to_pcm16(ulaw)
    expected_rms = 8000 / math.sqrt(2)
    assert audioop.rms(pcm, 2) == pytest.approx(expected_rms, rel=0.1)


def test_read_wav_accepts_unsigned_8_bit(tmp_path: Path) -> None:
    pcm8_signed = audioop.lin2lin(_tone_pcm16(8000, 0.25), 2, 1)
    path = tmp_path / "eight.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(1)
        wav.setframerate(8000)
        wav.writeframes(audioop.bias(pcm8_signed, 1, 128))  # WAV stores 8-bit as unsigned

    pcm = ulaw_to_pcm16(read_wav_as_ulaw(path))
    assert len(pcm) == 2 * 2000
    # Read as signed by mistake, the +128 bias would show up as a large DC offset.
    assert abs(audioop.avg(pcm, 2)) < 300
    assert audioop.rms(pcm, 2) == pytest.approx(8000 / math.sqrt(2), rel=0.1)


def test_greeting_s_is_how_long_the_server_plays_the_greeting() -> None:
    assert greeting_s("") == 0.0
    seconds = greeting_s("Hello, welcome.")
    assert 0.3 < seconds < 5.0
    # The server renders through its prompt cache with the same engine the caller speaks with.
    assert seconds == pytest.approx(len(speech_audio("Hello, welcome.")) / 8000, abs=0.05)
