"""Stream rotation at a shortened limit: no word lost or doubled across stream boundaries."""

import pytest

from telephony.stt.google.streaming import GoogleSttSession
from tests.fakes.google_speech import (
    Collector,
    FakeSpeechServer,
    FrameVad,
    play,
    script_words,
    speak,
)
from tests.telephony.stt.google.helpers import open_session

# Long utterances (a phone number read out) so that rotations fall mid-sentence.
SCRIPT = [
    ["שלום", "אני", "רוצה", "לקבוע", "תור", "לרופא"],
    ["מספר", "טלפון", "אחת", "שתיים", "שלוש", "ארבע", "חמש", "שש", "שבע", "שמונה", "תשע", "עשר"],
    ["מחר", "בבוקר"],
    ["איפה", "הסניף", "הקרוב", "בבקשה"],
    ["תודה", "רבה"],
]
WORDS = script_words(SCRIPT)


def run_call(
    server: FakeSpeechServer, *, rotate_s: float, vad: bool
) -> tuple[Collector, GoogleSttSession]:
    sink = Collector()
    session = open_session([server.host], sink, "CArotate", rotate_s=rotate_s)
    play(session, speak(SCRIPT), speed=4.0, vad=FrameVad() if vad else None)
    session.close(timeout=2.0)
    return sink, session


@pytest.mark.parametrize("vad", [False, True], ids=["no-vad", "vad"])
def test_rotation_before_the_limit_loses_and_doubles_no_word(vad: bool) -> None:
    # Google's limit is 1.2 s here; the engine rotates by 0.6 s (0.48 s when quiet).
    with FakeSpeechServer(stream_limit_s=1.2, endpoint_ms=500) as server:
        sink, session = run_call(server, rotate_s=0.6, vad=vad)

    assert sink.final_words() == WORDS
    sink.check_partials(WORDS)
    assert session.rotations >= 4
    assert session.reconnects == 0
    assert sink.event_kinds().count("stt_rotation") == session.rotations
    # Every stream was let go before Google's limit, and said its last word on half-close.
    assert {log.outcome for log in server.streams} == {"ok"}
    assert session.frames_in == session.frames_written


def test_overlapping_streams_did_recognize_words_twice() -> None:
    # The proof that de-duplication was needed: the server finalized some words on two streams
    # (the retired one on half-close, the next one from its replay); the call heard them once.
    with FakeSpeechServer(stream_limit_s=1.2, endpoint_ms=500) as server:
        sink, _session = run_call(server, rotate_s=0.6, vad=False)
    server_words = [w.text for r in server.finals() for w in r.words]
    assert len(server_words) > len(WORDS)
    assert sink.final_words() == WORDS


def test_google_ending_the_stream_is_a_lossless_rotation() -> None:
    # The engine would rotate at 60 s; Google cuts every stream at 0.7 s (OUT_OF_RANGE).
    with FakeSpeechServer(stream_limit_s=0.7, endpoint_ms=500) as server:
        sink, session = run_call(server, rotate_s=60.0, vad=False)

    assert sink.final_words() == WORDS
    sink.check_partials(WORDS)
    cut = [log for log in server.streams if log.outcome.startswith("OUT_OF_RANGE")]
    assert len(cut) >= 2
    assert "Exceeded maximum allowed stream duration" in cut[0].outcome
    # The last cut may land while the call is closing: nothing is left to rotate to then.
    assert len(cut) - 1 <= session.rotations <= len(cut)
    assert session.reconnects == 0
    # Audio after the last final was sent again on the next stream: replayed, not lost.
    assert sum(len(log.audio) for log in server.streams) > len(speak(SCRIPT))
