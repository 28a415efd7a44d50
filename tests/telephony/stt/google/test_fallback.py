"""Endpoint fallback, and single `recognize` requests when streaming cannot be had."""

import asyncio
import time

import grpc
import pytest
from google.api_core import exceptions as core_exceptions

from telephony.stt.google import GoogleSttConfig, GoogleSttEngine
from tests.fakes.google_speech import (
    APPOINTMENT_SCRIPT,
    Collector,
    FakeSpeechServer,
    FrameVad,
    play,
    script_words,
    speak,
)

SCRIPT = APPOINTMENT_SCRIPT
WORDS = script_words(SCRIPT)


def test_refused_endpoint_falls_back_once_and_is_remembered() -> None:
    # The first endpoint does not serve Hebrew (as a region might not); the second does.
    with (
        FakeSpeechServer(languages=("en-US",)) as eu,
        FakeSpeechServer(endpoint_ms=500) as global_,
    ):
        engine = GoogleSttEngine(GoogleSttConfig(endpoints=(eu.host, global_.host), insecure=True))
        sink = Collector()
        session = engine.open("CAeu", sink, on_event=sink.event)
        play(session, speak(SCRIPT))
        session.close(timeout=2.0)

        assert sink.final_words() == WORDS
        assert len(eu.streams) == 1
        assert eu.streams[0].outcome.startswith("INVALID_ARGUMENT")
        assert session.endpoint_fallbacks == 1
        assert session.reconnects == 0
        (detail,) = [d for kind, d in sink.events if kind == "stt_endpoint_fallback"]
        assert eu.host in detail
        assert global_.host in detail
        assert "language" in detail
        assert session.frames_dropped == 0  # audio waited in the queue while it fell back

        # The next call goes straight to the endpoint that serves it.
        second = Collector()
        later = engine.open("CAeu2", second, on_event=second.event)
        play(later, speak(SCRIPT[:1]))
        later.close(timeout=2.0)
        assert second.final_words() == SCRIPT[0]
        assert len(eu.streams) == 1
        assert "stt_endpoint_fallback" not in second.event_kinds()


def test_refused_everywhere_recognizes_vad_utterances_with_single_requests() -> None:
    with FakeSpeechServer(refuse_streaming=True, endpoint_ms=500) as server:
        engine = GoogleSttEngine(GoogleSttConfig(endpoints=(server.host,), insecure=True))
        sink = Collector()
        session = engine.open("CAsingle", sink, on_event=sink.event)
        play(session, speak(SCRIPT), vad=FrameVad())
        session.close(timeout=2.0)

    assert session.mode == "single-request"
    assert "stt_single_request" in sink.event_kinds()
    finals = sink.finals()
    assert [h.text.split() for h in finals] == SCRIPT
    assert [h.utterance for h in finals] == [1, 2, 3, 4]  # the VAD's own utterance numbers
    assert len(server.recognitions) == len(SCRIPT)
    for log in server.recognitions:
        assert log.config.language_code == "he-IL"
        assert log.config.use_enhanced is True
        assert len(log.audio) <= 60 * 8000
    assert session.frames_in == session.frames_written


def test_single_requests_never_block_the_event_loop() -> None:
    async def scenario() -> tuple[float, list[str], str]:
        loop = asyncio.get_running_loop()
        lags: list[float] = []
        stop = asyncio.Event()

        async def heartbeat() -> None:
            while not stop.is_set():
                before = loop.time()
                await asyncio.sleep(0.005)
                lags.append(loop.time() - before - 0.005)

        with FakeSpeechServer(refuse_streaming=True, recognize_delay_s=0.3) as server:
            engine = GoogleSttEngine(GoogleSttConfig(endpoints=(server.host,), insecure=True))
            beat = asyncio.create_task(heartbeat())
            sink = Collector()
            # The session is opened and fed from threads, as the call path does.
            session = await loop.run_in_executor(None, engine.open, "CAloop", sink)
            await loop.run_in_executor(None, lambda: play(session, speak(SCRIPT), vad=FrameVad()))
            # The brief's single request, awaited on the loop: Google's 0.3 s is spent elsewhere.
            direct = await engine.recognize_async(speak(SCRIPT[:1]))
            await loop.run_in_executor(None, session.close, 2.0)
            stop.set()
            await beat
        return max(lags), sink.final_words(), direct

    worst_lag, words, direct = asyncio.run(scenario())
    assert words == WORDS
    assert direct == " ".join(SCRIPT[0])
    assert worst_lag < 0.05


def test_streaming_outage_uses_single_requests_then_streams_again() -> None:
    with FakeSpeechServer(endpoint_ms=500) as server:
        # Google streaming is down for a while: streams fail at once, `recognize` works.
        for _ in range(5):
            server.fail_stream(grpc.StatusCode.UNAVAILABLE, "The service is currently unavailable.")
        engine = GoogleSttEngine(
            GoogleSttConfig(
                endpoints=(server.host,),
                insecure=True,
                backoff_s=0.2,
                backoff_max_s=0.4,
                max_failures=2,
            ),
            rand=lambda: 1.0,
        )
        sink = Collector()
        session = engine.open("CAdegraded", sink, on_event=sink.event)
        play(session, speak(SCRIPT + SCRIPT[:1]), vad=FrameVad())
        session.close(timeout=2.0)

    assert sink.final_words() == WORDS + SCRIPT[0]  # each word once, whichever path heard it
    assert len(server.recognitions) >= 1  # utterances during the outage went as single requests
    assert server.streams[-1].outcome == "ok"  # and streaming came back
    assert session.mode == "streaming"
    assert sink.event_kinds().count("stt_single_request") == 1
    assert session.frames_dropped == 0


def test_failed_single_request_is_reported_not_fatal() -> None:
    with FakeSpeechServer(refuse_streaming=True, endpoint_ms=500) as server:
        server.fail_recognize(grpc.StatusCode.INVALID_ARGUMENT, "bad audio")
        engine = GoogleSttEngine(GoogleSttConfig(endpoints=(server.host,), insecure=True))
        sink = Collector()
        session = engine.open("CAfail", sink, on_event=sink.event)
        play(session, speak(SCRIPT[:2]), vad=FrameVad())
        session.close(timeout=2.0)

    assert [h.text.split() for h in sink.finals()] == SCRIPT[1:2]
    (detail,) = [d for kind, d in sink.events if kind == "stt_recognize_failed"]
    assert "utterance 1" in detail
    assert "INVALID_ARGUMENT" in detail


def test_engine_recognize_has_an_explicit_deadline() -> None:
    # The library's default would retry for up to 5000 s; ours gives up after 0.3 s.
    with FakeSpeechServer(recognize_delay_s=1.0) as server:
        engine = GoogleSttEngine(
            GoogleSttConfig(endpoints=(server.host,), insecure=True, recognize_timeout_s=0.3)
        )
        started = time.monotonic()
        with pytest.raises((core_exceptions.DeadlineExceeded, core_exceptions.RetryError)):
            engine.recognize(speak(SCRIPT[:1]))
        assert time.monotonic() - started < 0.9
