"""One call's session built by hand for tests: no threads, an injected clock, reports kept."""

from __future__ import annotations

from telephony.observer import CallObserver
from telephony.session import CallSession, SessionConfig
from telephony.stt.none import NullSttEngine
from telephony.turns.endpointing import Endpointer
from tests.helpers.clock import FakeClock
from tests.helpers.speech import VOICE


class Recorded(CallObserver):
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict | None]] = []
        self.samples = []
        self.played: list[str] = []

    def event(self, call_sid, kind, detail="", data=None):
        self.events.append((kind, detail, data))

    def second(self, sample):
        self.samples.append(sample)

    def greeting_played(self, call_sid):
        self.played.append(call_sid)


def make_session(clock: FakeClock, **config) -> tuple[CallSession, list[tuple[str, str]], Recorded]:
    sent: list[tuple[str, str]] = []
    observer = Recorded()
    session = CallSession(
        call_sid="CA1",
        stream_sid="MZ1",
        stt_engine=NullSttEngine(),
        render_prompt=lambda text: VOICE * 300,  # 6 s of "speech" to play
        deliver=lambda text, kind: sent.append((kind, text)),
        observer=observer,
        config=SessionConfig(**{"prompt_mark_ms": 1000, "barge_in_min_speech_ms": 300, **config}),
        endpointer_factory=lambda **kw: Endpointer(**kw, min_speech_ms=60),
        clock=clock,
        wall_clock=clock,
    )
    session.build()
    session.stt = session.stt_engine.open("CA1", session.endpointer.hypothesis)
    return session, sent, observer
