"""The Google STT engine's pure rules: faults, backoff, rotation, de-duplication, config."""

import grpc
import pytest
from google.api_core import exceptions as core_exceptions
from google.cloud import speech_v1 as speech

from telephony.stt.google import (
    SOFT_ROTATION,
    Fault,
    GoogleSttConfig,
    GoogleSttEngine,
    TimedWord,
    backoff_delay,
    classify,
    describe,
    should_rotate,
    words_after,
)
from tests.fakes.google_speech import AUDIO_TIMEOUT_DETAILS, DURATION_DETAILS


def status(code: grpc.StatusCode, message: str) -> core_exceptions.GoogleAPICallError:
    return core_exceptions.from_grpc_status(code, message)


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        (status(grpc.StatusCode.OUT_OF_RANGE, DURATION_DETAILS.format(limit=305)), Fault.DURATION),
        (status(grpc.StatusCode.OUT_OF_RANGE, AUDIO_TIMEOUT_DETAILS), Fault.AUDIO_TIMEOUT),
        (status(grpc.StatusCode.UNAVAILABLE, "Connection reset"), Fault.TRANSIENT),
        (status(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"), Fault.TRANSIENT),
        (status(grpc.StatusCode.INTERNAL, "Internal error"), Fault.TRANSIENT),
        (status(grpc.StatusCode.INVALID_ARGUMENT, "bad language code"), Fault.REFUSED),
        (status(grpc.StatusCode.PERMISSION_DENIED, "not enabled"), Fault.REFUSED),
        (None, Fault.TRANSIENT),  # Google closed the stream without being asked: dropped
        (ValueError("Cannot invoke RPC on closed channel!"), Fault.TRANSIENT),
    ],
)
def test_classify(error: BaseException | None, fault: Fault) -> None:
    assert classify(error) is fault


def test_describe_names_the_code() -> None:
    error = status(grpc.StatusCode.UNAVAILABLE, "Connection reset")
    assert describe(error) == "UNAVAILABLE: Connection reset"
    assert describe(None) == "stream closed by the server"


def test_backoff_doubles_and_is_capped() -> None:
    top = [backoff_delay(n, 0.25, 4.0, lambda: 1.0) for n in range(8)]
    assert top == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    low = [backoff_delay(n, 0.25, 4.0, lambda: 0.0) for n in range(3)]
    assert low == [0.125, 0.25, 0.5]  # jitter takes off at most half
    assert backoff_delay(10_000, 0.25, 4.0, lambda: 1.0) == 4.0  # no overflow


def test_rotation_waits_for_a_quiet_moment_until_the_limit() -> None:
    limit = 290.0
    soft = SOFT_ROTATION * limit
    assert not should_rotate(soft - 1, limit, quiet=True)
    assert should_rotate(soft, limit, quiet=True)
    assert not should_rotate(limit - 1, limit, quiet=False)  # mid-sentence: wait a bit
    assert should_rotate(limit, limit, quiet=False)  # but never past the limit


def test_words_after_keeps_words_whose_middle_is_past_the_cut() -> None:
    words = [
        TimedWord("a", 0, 200),
        TimedWord("b", 260, 460),  # middle 360
        TimedWord("c", 520, 720),
    ]
    assert [w.text for w in words_after(words, 300)] == ["b", "c"]
    assert [w.text for w in words_after(words, 360)] == ["c"]  # a middle on the cut is taken
    assert words_after(words, 1000) == []


def test_recognition_config_is_what_the_brief_asks() -> None:
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


def test_refused_endpoint_is_skipped_for_a_while() -> None:
    now = [1000.0]
    engine = GoogleSttEngine(GoogleSttConfig(endpoints=("eu", "global")), clock=lambda: now[0])
    assert engine.endpoints() == ["eu", "global"]
    engine.refuse("eu", "INVALID_ARGUMENT: bad language code")
    assert engine.endpoints() == ["global"]
    now[0] += 599
    assert engine.endpoints() == ["global"]
    now[0] += 1  # after REFUSAL_TTL_S it is tried again
    assert engine.endpoints() == ["eu", "global"]
