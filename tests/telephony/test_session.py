"""One call's session driven by hand: scripted frames, an injected clock, no threads started."""

import base64
import json

from telephony.media.audio import SILENCE_FRAME
from telephony.stt.none import NullSttEngine
from tests.helpers.clock import FakeClock
from tests.helpers.session import make_session
from tests.helpers.speech import VOICE


def test_barge_in_clears_within_one_tick_and_knows_what_was_heard():
    clock = FakeClock(50.0)
    session, sent, observer = make_session(clock)
    session.greeting = session.say("a long greeting", label="greeting")
    for _ in range(60):  # 1.2 s of greeting sent
        session.tx.tick()
        clock.now += 0.02
    names = [json.loads(t)["mark"]["name"] for kind, t in sent if kind == "control"]
    assert names == ["greeting@1000"]
    session.mark_echoed("greeting@1000")  # Twilio played the first second
    triggered_at = None
    for n in range(20):  # the caller talks over the greeting
        session._rx_write(VOICE)
        if session.interrupted:
            triggered_at = n
            break
    assert triggered_at == 14  # the 15th speech frame: 300 ms of speech
    before = len(sent)
    session.tx.tick()  # the very next TX tick
    kinds = [kind for kind, _ in sent[before:]]
    assert kinds[0] == "clear"
    assert kinds[1:] == ["media"]
    assert base64.b64decode(json.loads(sent[before + 1][1])["media"]["payload"]) == SILENCE_FRAME
    assert session.interrupted == [
        {"prompt": "greeting", "heard_ms": 1000, "total_ms": 6000, "text": "a long greeting"}
    ]
    assert ("barge_in", "greeting", session.interrupted[0]) in observer.events
    # Twilio echoes pending marks on clear; an interrupted greeting is not "played"
    session.mark_echoed("greeting@end")
    assert observer.played == []


def test_speech_while_nothing_plays_is_not_a_barge_in():
    clock = FakeClock(50.0)
    session, sent, _ = make_session(clock)
    for _ in range(30):
        session._rx_write(VOICE)
    session.tx.tick()
    assert session.interrupted == []
    assert [kind for kind, _ in sent] == ["media"]


def test_short_backchannel_does_not_interrupt():
    clock = FakeClock(50.0)
    session, _, _ = make_session(clock)
    session.say("reply", label="r1")
    session.tx.tick()
    for _ in range(3):
        for _ in range(8):  # 160 ms of "mm": webrtcvad hears 280 ms, under the 300 ms bar
            session._rx_write(VOICE)
        for _ in range(15):  # a pause between them
            session._rx_write(SILENCE_FRAME)
    assert session.interrupted == []


def test_greeting_end_mark_records_greeting_played():
    clock = FakeClock(50.0)
    session, _, observer = make_session(clock)
    session.greeting = session.say("hi", label="greeting")
    for _ in range(310):
        session.tx.tick()
    session.mark_echoed("greeting@end")
    assert observer.played == ["CA1"]
    assert session.greeting_played_at == clock.now


def test_per_second_report_matches_the_queues():
    clock = FakeClock(50.0)
    session, _, observer = make_session(clock)
    for _ in range(50):
        session.rx_enqueue(SILENCE_FRAME)
    for _ in range(48):
        session.rx.rx_q.get_nowait()
        session.rx._write_one(SILENCE_FRAME)
    for _ in range(50):
        session.tx.tick()
    clock.now += 1.0
    session._rx_tick()
    (sample,) = observer.samples
    assert (sample.fps_in, sample.rx_q, sample.rx_drops, sample.tx_fps) == (50, 2, 0, 50)
    assert sample.rx_line() == f"[RX] call=CA1 fps_in=50 q=2 drops=0 write_ms={sample.write_ms:.2f}"
    assert sample.tx_line() == "[TX] call=CA1 fps=50 q=0 drops=0"


def test_what_the_engine_reports_becomes_a_call_event():
    class Reporting(NullSttEngine):
        def open(self, call_sid, on_hypothesis, *, on_event=None):
            on_event("stt_reconnect", "UNAVAILABLE; reconnect 1 in 0.25 s")
            return super().open(call_sid, on_hypothesis)

    clock = FakeClock(50.0)
    session, _, observer = make_session(clock)
    session.stt_engine = Reporting()
    session._open_stt()
    assert ("stt_reconnect", "UNAVAILABLE; reconnect 1 in 0.25 s", None) in observer.events
    assert session.stt is not None
