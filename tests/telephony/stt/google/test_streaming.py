"""Google STT streaming with the real client library against the fake Speech server."""

import itertools
import statistics
import threading
import time
from collections.abc import Iterator

import pytest
from google.cloud import speech_v1 as speech

from telephony.stt.google import streaming
from tests.fakes.google_speech import (
    SILENCE,
    Collector,
    FakeSpeechServer,
    FrameVad,
    play,
    script_words,
    speak,
)
from tests.telephony.stt.google.helpers import open_session

SCRIPT = [
    ["שלום", "אני", "רוצה", "לקבוע", "תור"],
    ["לרופא", "מחר", "בבוקר"],
    ["תודה", "רבה"],
]


@pytest.fixture
def server() -> Iterator[FakeSpeechServer]:
    with FakeSpeechServer(endpoint_ms=500) as fake:
        yield fake


def test_stream_opens_with_the_configured_recognition(server: FakeSpeechServer) -> None:
    sink = Collector()
    session = open_session([server.host], sink, model="phone_call")
    play(session, speak(SCRIPT))
    session.close(timeout=2.0)

    log = server.streams[0]
    assert log.config is not None
    config = log.config.config
    assert config.language_code == "he-IL"
    assert config.use_enhanced is True
    assert config.model == "phone_call"
    assert config.encoding == speech.RecognitionConfig.AudioEncoding.MULAW
    assert config.sample_rate_hertz == 8000
    assert log.config.interim_results is True
    # Mu-law goes as is: the server got Twilio's bytes, not a conversion of them.
    assert bytes(log.audio) == speak(SCRIPT)[: len(log.audio)]
    assert len(log.audio) >= len(speak(SCRIPT)) - 160

    assert sink.final_words() == script_words(SCRIPT)
    assert len(sink.finals()) == len(SCRIPT)
    assert any(not h.is_final for h in sink.hypotheses)
    sink.check_partials(script_words(SCRIPT))
    assert all(h.utterance is None for h in sink.hypotheses)  # the endpointer numbers them


def test_finals_without_any_time_reach_the_call() -> None:
    # Issue 12: a final with no result_end_time and no word offsets was dropped without a trace.
    with FakeSpeechServer(endpoint_ms=500, bare_finals=True) as fake:
        sink = Collector()
        session = open_session([fake.host], sink)
        play(session, speak(SCRIPT))
        session.close(timeout=2.0)
    assert [f.words for f in fake.finals()]  # the server sent finals, bare ones
    assert sink.final_words() == script_words(SCRIPT)
    assert len(sink.finals()) == len(SCRIPT)
    sink.check_partials(script_words(SCRIPT))


def test_requests_are_40_ms_batches_at_the_frame_cadence(server: FakeSpeechServer) -> None:
    sink = Collector()
    session = open_session([server.host], sink)
    play(session, bytes([SILENCE]) * 160 * 75, speed=1.0)  # 1.5 s in real time
    session.close(timeout=1.0)

    sizes = server.streams[0].request_sizes
    assert sum(sizes) == 160 * 75
    assert max(sizes) <= 25 * 1024
    # Two 20 ms frames per request; a lone frame goes alone only if its partner is late.
    assert set(sizes) <= {160, 320}
    assert sizes.count(320) >= 0.9 * len(sizes)
    times = server.streams[0].request_times
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert 0.030 <= statistics.median(gaps) <= 0.050


def test_a_lone_last_frame_goes_when_its_partner_never_comes(server: FakeSpeechServer) -> None:
    # Writes wake the sender once per batch; a frame left alone must still go, without close.
    # In lockstep with the server, so that a stream that starts late (a loaded machine) cannot
    # find all three frames waiting and send them as one catch-up request.
    sink = Collector()
    session = open_session([server.host], sink)

    def received() -> int:
        return sum(server.streams[0].request_sizes) if server.streams else 0

    def wait_for_bytes(n: int) -> None:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and received() < n:
            time.sleep(0.01)

    session.write(bytes([SILENCE]) * 160)
    session.write(bytes([SILENCE]) * 160)  # one batch
    wait_for_bytes(320)
    session.write(bytes([SILENCE]) * 160)  # and a lone frame: no partner, no close
    wait_for_bytes(480)
    sizes = list(server.streams[0].request_sizes)
    session.close(timeout=1.0)
    assert sizes == [320, 160]
    assert session.frames_in == session.frames_written == 3


def test_quiet_audio_goes_in_longer_requests_speech_in_batch_ms(
    server: FakeSpeechServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streaming, "SPEECH_TAIL_S", 0.2)  # the pauses below outlast it
    sink = Collector()
    session = open_session([server.host], sink, quiet_batch_ms=200)
    audio = speak(SCRIPT, pause_ms=2000)  # 8.7 s: 112 requests where 40 ms ones make 218
    # In real time: a sender more than a frame late (a loaded machine) sends what waits in one
    # catch-up request, which may mix silence and speech; at 4x speed a 5 ms delay did that.
    play(session, audio, vad=FrameVad(), speed=1.0)
    session.close(timeout=2.0)

    log = server.streams[0]
    assert bytes(log.audio) == audio  # every frame, in order, once
    assert session.frames_in == session.frames_written
    assert sink.final_words() == script_words(SCRIPT)
    assert len(sink.finals()) == len(SCRIPT)
    # Quiet stretches went as 200 ms requests, speech as 40 ms ones: far fewer requests.
    assert log.request_sizes.count(1600) >= 10
    assert log.request_sizes.count(320) >= 20
    assert len(log.request_sizes) < 0.6 * len(audio) / 320
    # Each word's audio went in 40 ms requests: no request holds both silence and 200 ms.
    offset = 0
    for size in log.request_sizes:
        chunk = audio[offset : offset + size]
        offset += size
        if size > 320 and any(b != SILENCE for b in chunk):
            # Only the onset: what waited in a quiet batch when the VAD heard speech.
            assert chunk.count(SILENCE) >= size - 160 * 4, size


def test_linear16_encoding_decodes_the_frames_first(server: FakeSpeechServer) -> None:
    sink = Collector()
    session = open_session([server.host], sink, encoding="LINEAR16")
    play(session, speak(SCRIPT[:1]))
    session.close(timeout=2.0)
    log = server.streams[0]
    assert log.config.config.encoding == speech.RecognitionConfig.AudioEncoding.LINEAR16
    # 40 ms of 16-bit samples a request; a client that fell behind (a busy machine) sends two
    # or three such chunks in one catch-up request, never a part of one.
    sizes = log.request_sizes[:-1]
    assert all(size % 640 == 0 for size in sizes), sizes
    assert statistics.mode(sizes) == 640
    assert sink.final_words() == SCRIPT[0]


def test_write_returns_at_once_while_google_is_unreachable() -> None:
    # Nothing listens on this port: every stream fails with UNAVAILABLE.
    sink = Collector()
    session = open_session(
        ["127.0.0.1:9"],
        sink,
        queue_frames=50,
        backoff_s=0.01,
        backoff_max_s=0.05,
        max_failures=1000,  # no single-request mode here: frames wait in the queue
    )
    times: list[float] = []
    play(session, bytes([SILENCE]) * 160 * 400, speed=20.0, write_times=times)
    pending = session.frames_pending
    session.close(timeout=1.0)

    times.sort()
    assert times[int(len(times) * 0.99)] < 0.001  # p99 under 1 ms
    assert pending <= 50  # the queue stays bounded
    assert session.frames_in == 400
    assert session.frames_dropped > 0
    assert session.frames_in == session.frames_written + session.frames_dropped
    assert session.reconnects >= 1
    assert "stt_reconnect" in sink.event_kinds()


def test_close_sends_the_tail_and_delivers_the_last_final(server: FakeSpeechServer) -> None:
    sink = Collector()
    session = open_session([server.host], sink, call_sid="CAclose")
    # The caller hangs up 100 ms after the last word: Google's endpoint has not fired yet.
    play(session, speak(SCRIPT[:2], pause_ms=100))
    names = [t.name for t in threading.enumerate() if t.name.endswith("CAclose")]
    assert "stt-CAclose" in names
    assert any(name.startswith("stt-s0-") for name in names)

    started = time.monotonic()
    session.close(timeout=1.0)
    assert time.monotonic() - started < 1.1
    assert sink.final_words() == script_words(SCRIPT[:2])
    assert session.alive_threads() == []
    assert not [t for t in threading.enumerate() if t.name.endswith("CAclose")]
    assert server.streams[0].outcome == "ok"  # half-closed, not cancelled
    assert session.frames_in == session.frames_written


def test_close_is_bounded_when_google_hangs() -> None:
    # The server takes the stream but its handler never answers half-close in time.
    with FakeSpeechServer(endpoint_ms=500) as fake:
        sink = Collector()
        session = open_session([fake.host], sink, call_sid="CAhang")
        play(session, speak(SCRIPT[:1], pause_ms=100))
        fake.stop()  # Google goes away under an open stream
        started = time.monotonic()
        session.close(timeout=0.5)
        assert time.monotonic() - started < 0.7
        assert session.alive_threads() == []
