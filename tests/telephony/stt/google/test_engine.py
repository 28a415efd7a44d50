"""The engine's endpoint health: a refusing endpoint is left for the next, and remembered."""

from telephony.stt.google.config import GoogleSttConfig
from telephony.stt.google.engine import REFUSAL_TTL_S, GoogleSttEngine
from tests.fakes.google_speech import (
    APPOINTMENT_SCRIPT,
    Collector,
    FakeSpeechServer,
    play,
    script_words,
    speak,
)
from tests.helpers.clock import FakeClock
from tests.telephony.stt.google.helpers import fake_engine

SCRIPT = APPOINTMENT_SCRIPT
WORDS = script_words(SCRIPT)


def test_refused_endpoint_is_skipped_for_a_while() -> None:
    clock = FakeClock(start=1000.0)
    engine = GoogleSttEngine(GoogleSttConfig(endpoints=("eu", "global")), clock=clock)
    assert engine.endpoints() == ["eu", "global"]
    engine.refuse("eu", "INVALID_ARGUMENT: bad language code")
    assert engine.endpoints() == ["global"]
    clock.advance(599)
    assert engine.endpoints() == ["global"]
    clock.advance(1)  # after REFUSAL_TTL_S it is tried again
    assert REFUSAL_TTL_S == 600
    assert engine.endpoints() == ["eu", "global"]


def test_refused_endpoint_falls_back_once_and_is_remembered() -> None:
    # The first endpoint does not serve Hebrew (as a region might not); the second does.
    with (
        FakeSpeechServer(languages=("en-US",)) as eu,
        FakeSpeechServer(endpoint_ms=500) as global_,
    ):
        engine = fake_engine([eu.host, global_.host])
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
