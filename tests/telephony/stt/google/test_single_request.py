"""Single `recognize` requests for VAD-cut utterances when streaming cannot be had."""

import asyncio
import re
import threading
import time

import grpc

from tests.fakes.google_speech import (
    APPOINTMENT_SCRIPT,
    Collector,
    FakeSpeechServer,
    FrameVad,
    play,
    script_words,
    speak,
)
from tests.telephony.stt.google.helpers import open_session

SCRIPT = APPOINTMENT_SCRIPT
WORDS = script_words(SCRIPT)


def test_refused_everywhere_recognizes_vad_utterances_with_single_requests() -> None:
    with FakeSpeechServer(refuse_streaming=True, endpoint_ms=500) as server:
        sink = Collector()
        session = open_session([server.host], sink, "CAsingle")
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
        first_final: asyncio.Future[str] = loop.create_future()

        async def heartbeat() -> None:
            while not stop.is_set():
                before = loop.time()
                await asyncio.sleep(0.005)
                lags.append(loop.time() - before - 0.005)

        def settle(text: str) -> None:
            if not first_final.done():
                first_final.set_result(text)

        class LoopSink(Collector):
            """Also hands the first final to the event loop, as the call path's sink would."""

            def __call__(self, hypothesis: object) -> None:
                super().__call__(hypothesis)
                if hypothesis.is_final:  # type: ignore[attr-defined]
                    loop.call_soon_threadsafe(settle, hypothesis.text)  # type: ignore[attr-defined]

        with FakeSpeechServer(refuse_streaming=True, recognize_delay_s=0.3) as server:
            beat = asyncio.create_task(heartbeat())
            sink = LoopSink()
            # The session is opened and fed from threads, as the call path does.
            session = await loop.run_in_executor(None, open_session, [server.host], sink, "CAloop")
            playing = loop.run_in_executor(
                None, lambda: play(session, speak(SCRIPT), vad=FrameVad())
            )
            # The first utterance's single request, awaited on the loop: Google's 0.3 s is
            # spent in the session's request thread.
            direct = await asyncio.wait_for(first_final, timeout=5.0)
            await playing
            await loop.run_in_executor(None, session.close, 2.0)
            stop.set()
            await beat
        assert session.mode == "single-request"
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
        sink = Collector()
        session = open_session(
            [server.host],
            sink,
            "CAdegraded",
            rand=lambda: 1.0,
            backoff_s=0.2,
            backoff_max_s=0.4,
            max_failures=2,
        )
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
        sink = Collector()
        session = open_session([server.host], sink, "CAfail")
        play(session, speak(SCRIPT[:2]), vad=FrameVad())
        session.close(timeout=2.0)

    assert [h.text.split() for h in sink.finals()] == SCRIPT[1:2]
    (detail,) = [d for kind, d in sink.events if kind == "stt_recognize_failed"]
    assert "utterance 1" in detail
    assert "INVALID_ARGUMENT" in detail


class TimedVad(FrameVad):
    """The stand-in VAD, noting when it ended an utterance."""

    def __init__(self) -> None:
        super().__init__()
        self.ended_at: dict[int, float] = {}

    def process(self, frame: bytes) -> tuple[int, int]:
        started, ended = super().process(frame)
        if ended:
            self.ended_at[ended] = time.monotonic()
        return started, ended


class TimedCollector(Collector):
    """The session's sink, noting when each event came; `failed` is set by a failed request."""

    def __init__(self) -> None:
        super().__init__()
        self.event_times: list[float] = []
        self.failed = threading.Event()

    def event(self, kind: str, detail: str) -> None:
        self.event_times.append(time.monotonic())
        super().event(kind, detail)
        if kind == "stt_recognize_failed":
            self.failed.set()


def test_single_request_has_an_explicit_deadline() -> None:
    # The library's default would retry for up to 5000 s; ours gives up after 0.3 s.
    with FakeSpeechServer(refuse_streaming=True, recognize_delay_s=1.0) as server:
        sink = TimedCollector()
        vad = TimedVad()
        session = open_session([server.host], sink, "CAdeadline", recognize_timeout_s=0.3)
        play(session, speak(SCRIPT[:1]), vad=vad)
        assert sink.failed.wait(timeout=2.0)
        session.close(timeout=2.0)

    (failed,) = [i for i, kind in enumerate(sink.event_kinds()) if kind == "stt_recognize_failed"]
    # Given up on with DeadlineExceeded, or the RetryError the retry ends in once its 0.3 s are up.
    assert re.match(r"utterance 1: (DEADLINE_EXCEEDED|RetryError): ", sink.events[failed][1])
    assert sink.event_times[failed] - vad.ended_at[1] < 0.9
    assert len(server.recognitions) >= 1
    assert sink.finals() == []
