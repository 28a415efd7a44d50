"""GoogleSttConfig: the recognition it asks for, what it refuses, what settings give it."""

import pytest
from google.cloud import speech_v1 as speech

from telephony.stt.google.config import GoogleSttConfig
from telephony.stt.google.engine import GoogleSttEngine


def test_recognition_config_is_hebrew_enhanced_mulaw_with_word_times() -> None:
    config = GoogleSttConfig(model="phone_call").recognition_config()
    assert config.language_code == "he-IL"
    assert config.use_enhanced is True
    assert config.encoding == speech.RecognitionConfig.AudioEncoding.MULAW
    assert config.sample_rate_hertz == 8000
    assert config.model == "phone_call"
    assert config.enable_word_time_offsets is True
    streaming = GoogleSttConfig().streaming_config()
    assert streaming.interim_results is True
    assert streaming.single_utterance is False
    assert streaming.config.model == ""  # unset: Google picks


def test_config_refuses_what_cannot_work() -> None:
    with pytest.raises(ValueError, match="encoding"):
        GoogleSttConfig(encoding="FLAC")
    with pytest.raises(ValueError, match="endpoint"):
        GoogleSttConfig(endpoints=())
    assert GoogleSttConfig(encoding="LINEAR16").bytes_per_ms == 16
    # A driver that never waits would loop: rotation and backoff must take time.
    for zero in ({"rotate_s": 0.0}, {"backoff_s": 0.0}, {"backoff_s": 1.0, "backoff_max_s": 0.5}):
        with pytest.raises(ValueError, match="positive"):
            GoogleSttConfig(**zero)


def test_settings_give_primary_then_fallback_endpoints(settings) -> None:
    settings.GOOGLE_SPEECH_EMULATOR_HOST = ""
    settings.GOOGLE_SPEECH_ENDPOINT = "eu-speech.googleapis.com"
    settings.GOOGLE_SPEECH_FALLBACK_ENDPOINTS = [
        "speech.googleapis.com",
        "eu-speech.googleapis.com",
    ]
    settings.STT_LANGUAGE = "he-IL"
    config = GoogleSttConfig.from_settings()
    assert config.endpoints == ("eu-speech.googleapis.com", "speech.googleapis.com")
    assert config.insecure is False
    assert config.batch_ms == settings.BATCH_MS == 40


def test_settings_emulator_hosts_replace_the_endpoints(settings) -> None:
    settings.GOOGLE_SPEECH_EMULATOR_HOST = "127.0.0.1:9001, 127.0.0.1:9002"
    config = GoogleSttConfig.from_settings()
    assert config.endpoints == ("127.0.0.1:9001", "127.0.0.1:9002")
    assert config.insecure is True
    engine = GoogleSttEngine.from_settings()
    assert (engine.name, engine.language) == ("google", "he-IL")
