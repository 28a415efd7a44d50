"""GoogleTtsEngine with the real client library against the fake Text-to-Speech server."""

from collections.abc import Iterator

import grpc
import pytest
from google.api_core import exceptions as core_exceptions
from google.cloud import texttospeech_v1 as tts

from telephony.media.audio import FRAME_BYTES, split_frames
from telephony.tts.cache import PromptCache
from telephony.tts.google import GoogleTtsEngine, language_of, to_ulaw_8k
from telephony.tts.wav import parse_wav
from tests.fakes.google_tts import WAVE_FORMAT_PCM, FakeTtsServer, render, wav_file

GREETING = "שלום, תודה שהתקשרת. במה אפשר לעזור?"


@pytest.fixture
def server() -> Iterator[FakeTtsServer]:
    with FakeTtsServer() as fake:
        yield fake


def engine_for(server: FakeTtsServer, voice: str = "he-IL-Wavenet-A") -> GoogleTtsEngine:
    return GoogleTtsEngine(voice=voice, emulator_host=server.host, timeout_s=5.0)


def test_request_asks_for_hebrew_mulaw_8k(server: FakeTtsServer) -> None:
    engine_for(server).synthesize(GREETING)
    (request,) = server.requests
    assert request.text == GREETING
    assert request.voice == "he-IL-Wavenet-A"
    assert request.language == "he-IL"
    assert request.encoding == tts.AudioEncoding.MULAW
    assert request.sample_rate == 8000


def test_audio_is_the_samples_without_the_58_byte_header(server: FakeTtsServer) -> None:
    audio = engine_for(server).synthesize(GREETING)
    assert audio == render(GREETING)
    assert not audio.startswith(b"RIFF")
    frames = split_frames(audio)
    assert len(frames) == len(GREETING)  # 20 ms per character, cut into 160-byte frames
    assert all(len(f) == FRAME_BYTES for f in frames)


def test_list_chunk_before_data_is_skipped() -> None:
    with FakeTtsServer(list_chunk=True) as server:
        assert engine_for(server).synthesize("כן") == render("כן")


def test_unavailable_once_is_retried(server: FakeTtsServer) -> None:
    server.fail_next(grpc.StatusCode.UNAVAILABLE)
    assert engine_for(server).synthesize("תודה") == render("תודה")
    assert len(server.requests) == 2


def test_unknown_voice_is_refused_not_retried(server: FakeTtsServer) -> None:
    with pytest.raises(core_exceptions.InvalidArgument, match="does not exist"):
        engine_for(server, voice="he-IL-Imaginary-Z").synthesize("שלום")
    assert len(server.requests) == 1


def test_text_over_the_limit_is_refused_before_any_request(server: FakeTtsServer) -> None:
    with pytest.raises(ValueError, match="5000-byte"):
        engine_for(server).synthesize("א" * 2600)  # 5200 bytes of UTF-8
    assert server.requests == []


def test_linear16_wav_is_converted_to_mulaw_8k() -> None:
    pcm = b"\x00\x10" * 1600  # 1600 samples: 100 ms at 16 kHz
    wav = parse_wav(wav_file(pcm, format_tag=WAVE_FORMAT_PCM, sample_rate=16000, bits=16))
    ulaw = to_ulaw_8k(wav)
    assert len(ulaw) == 800  # 100 ms at 8 kHz, one byte per sample


def test_language_comes_from_the_voice_name() -> None:
    assert language_of("he-IL-Standard-B") == "he-IL"
    with pytest.raises(ValueError, match="voice name"):
        language_of("hebrew")


def test_repeat_greeting_does_no_synthesis(server: FakeTtsServer, tmp_path) -> None:
    engine = engine_for(server)
    first = PromptCache(engine, tmp_path).render(GREETING)
    # A new process: fresh memory, same disk.
    second = PromptCache(engine_for(server), tmp_path).render(GREETING)
    assert first == second == render(GREETING)
    assert len(server.requests) == 1


def test_from_settings_uses_the_emulator_host(server: FakeTtsServer, settings) -> None:
    settings.GOOGLE_TTS_EMULATOR_HOST = server.host
    settings.GOOGLE_TTS_VOICE = "he-IL-Standard-A"
    engine = GoogleTtsEngine.from_settings()
    assert (engine.name, engine.voice, engine.language) == ("google", "he-IL-Standard-A", "he-IL")
    assert engine.synthesize("לא") == render("לא")
    assert server.requests[-1].voice == "he-IL-Standard-A"
