"""One endpointer on a fake clock, recording what it publishes: shared by the endpointing tests."""

from __future__ import annotations

from telephony.media.audio import SILENCE_FRAME
from telephony.stt.base import Hypothesis
from telephony.turns.endpointing import Endpointer
from telephony.turns.transcript import TranscriptEvent
from tests.helpers.clock import FakeClock
from tests.helpers.speech import VOICE

SILENCE = SILENCE_FRAME


class Line:
    """One endpointer with a fake clock, recording its events and callbacks."""

    def __init__(self, **kwargs: object) -> None:
        self.clock = FakeClock(1000.0)
        self.events: list[TranscriptEvent] = []
        self.starts: list[tuple[int, int]] = []  # (utterance, position_ms when called)
        self.ends: list[tuple[int, int, float]] = []  # (utterance, position_ms, clock)
        self.speech_clock: list[float] = []  # clock at every frame the VAD called speech
        self.ep = Endpointer(
            call_sid="CAtest",
            publish=self.events.append,
            clock=self.clock,
            wall_clock=lambda: 1.7e9,
            on_speech_start=lambda n: self.starts.append((n, self.ep.position_ms)),
            on_speech_end=lambda n: self.ends.append((n, self.ep.position_ms, self.clock())),
            **kwargs,  # type: ignore[arg-type]
        )

    def feed(self, frames: list[bytes]) -> list[bool]:
        """Play frames in real time: 20 ms of clock per frame, a tick after each."""
        flags = []
        for frame in frames:
            self.clock.advance_ms(20)
            is_speech = self.ep.process_frame(frame)
            if is_speech:
                self.speech_clock.append(self.clock())
            flags.append(is_speech)
            self.ep.tick()
        return flags

    def wait(self, ms: float) -> None:
        """Let clock time pass with ticks but no audio (the tick needs no frame)."""
        self.clock.advance_ms(ms)
        self.ep.tick()

    def say(self, text: str, *, final: bool = False, utterance: int | None = None) -> None:
        self.ep.hypothesis(Hypothesis(text, is_final=final, utterance=utterance))

    def kinds(self) -> list[tuple[str, str]]:
        return [(e.kind, e.text) for e in self.events]

    def speak_and_stop(self, frames: int = 20) -> None:
        """Open an utterance, then play silence until the VAD ends it."""
        self.feed([SILENCE] * 5 + [VOICE] * frames)
        assert self.ep.speaking
        while self.ep.speaking:
            self.feed([SILENCE])
