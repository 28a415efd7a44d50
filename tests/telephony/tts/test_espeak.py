"""espeak-ng through ctypes: real renders, checked as phone audio."""

from __future__ import annotations

import threading
import time

import pytest
import webrtcvad
from django.core.exceptions import ImproperlyConfigured
from pytest_django.fixtures import Settings

from telephony.media.audio import split_frames, ulaw_to_pcm16
from telephony.tts import get_tts_engine
from telephony.tts.espeak import EspeakError, EspeakTts

PHRASE = "Hello, thank you for calling. How can I help you today?"


def speech_share(ulaw: bytes) -> float:
    """Share of 20 ms frames webrtcvad calls speech."""
    vad = webrtcvad.Vad(2)
    frames = split_frames(ulaw)
    return sum(vad.is_speech(ulaw_to_pcm16(f), 8000) for f in frames) / len(frames)


def test_synthesize_returns_8khz_mulaw_speech() -> None:
    tts = EspeakTts()
    tts.warm_up()
    started = time.perf_counter()
    ulaw = tts.synthesize(PHRASE)
    elapsed_ms = (time.perf_counter() - started) * 1000
    print(f"\nespeak render of {len(ulaw) / 8000:.2f} s of audio: {elapsed_ms:.1f} ms")
    assert 2.0 < len(ulaw) / 8000 < 6.0  # a sentence at espeak's ~175 words per minute
    assert speech_share(ulaw) > 0.6
    # The same audio as PCM16 at espeak's own rate, resampled: lengths agree.
    pcm, rate = tts.synthesize_pcm16(PHRASE)
    assert rate == 22050
    assert len(pcm) / 2 / rate == pytest.approx(len(ulaw) / 8000, rel=0.02)


def test_empty_text_renders_nothing() -> None:
    assert EspeakTts().synthesize("") == b""
    assert EspeakTts().synthesize_pcm16("  ") == (b"", 22050)


def test_unknown_voice_is_an_error_not_a_crash() -> None:
    with pytest.raises(EspeakError, match="no voice"):
        EspeakTts(voice="xx-nowhere").synthesize("hello")
    # The library is still usable afterwards.
    assert EspeakTts().synthesize("hello")


def test_hebrew_voice_renders_phoneme_input() -> None:
    # Plain Hebrew text has no vowels to read; espeak's [[...]] phoneme input does.
    ulaw = EspeakTts(voice="he").synthesize("[[Sal'om]]")
    assert 0.2 < len(ulaw) / 8000 < 2.0
    assert speech_share(ulaw) > 0.4


def test_concurrent_renders_do_not_mix() -> None:
    """The library is global: without the lock, two renders interleave their audio."""
    jobs = [("en-us", "one two three four five"), ("he", "[[Sal'om]]")] * 3
    serial = {job: len(EspeakTts(voice=job[0]).synthesize(job[1])) for job in set(jobs)}
    results: list[tuple[tuple[str, str], int]] = []
    barrier = threading.Barrier(len(jobs))

    def render(job: tuple[str, str]) -> None:
        barrier.wait()
        results.append((job, len(EspeakTts(voice=job[0]).synthesize(job[1]))))

    threads = [threading.Thread(target=render, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == len(jobs)
    for job, length in results:
        # espeak is not bit-exact from run to run (a render may differ by ~20 ms), so compare
        # lengths; mixed audio would be off by the other text's length (or crash).
        assert length == pytest.approx(serial[job], rel=0.05), job


def test_from_settings_and_registry(settings: Settings) -> None:
    settings.ESPEAK_VOICE = "en"
    assert EspeakTts.from_settings().voice == "en"
    engine = get_tts_engine("espeak")
    assert isinstance(engine, EspeakTts)
    assert get_tts_engine("espeak") is engine
    settings.TTS_ENGINE = "espeak"
    assert get_tts_engine() is engine
    with pytest.raises(ImproperlyConfigured, match="espeak, google"):
        get_tts_engine("festival")
