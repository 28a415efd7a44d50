"""The slow STT drill engine: every write blocks for the set time, then reaches the inner engine."""

from __future__ import annotations

from typing import Any

import pytest

from telephony.stt.base import EventSink, HypothesisSink, SttEngine, SttSession
from telephony.testing.slow_stt import SlowSttEngine, SlowSttSession


class RecordingSession(SttSession):
    """An inner session that writes down what reaches it, in order."""

    def __init__(self, events: list[Any]) -> None:
        self.events = events

    def write(self, frame: bytes) -> None:
        self.events.append(("write", frame))

    def speech_started(self, utterance: int) -> None:
        self.events.append(("speech_started", utterance))

    def speech_ended(self, utterance: int) -> None:
        self.events.append(("speech_ended", utterance))

    def close(self, timeout: float = 1.0) -> None:
        self.events.append(("close", timeout))


class RecordingEngine(SttEngine):
    name = "recording"
    language = "en-US"

    def __init__(self, events: list[Any]) -> None:
        self.events = events

    def warm_up(self) -> None:
        self.events.append(("warm_up",))

    def open(
        self, call_sid: str, on_hypothesis: HypothesisSink, *, on_event: EventSink | None = None
    ) -> SttSession:
        self.events.append(("open", call_sid))
        return RecordingSession(self.events)


def test_every_write_blocks_first_and_the_rest_passes_straight_on() -> None:
    events: list[Any] = []
    engine = SlowSttEngine(lambda: RecordingEngine(events), write_ms=5.0, sleep=events.append)
    assert engine.language == "en-US"
    engine.warm_up()

    session = engine.open("CA1", lambda hypothesis: None)
    assert isinstance(session, SlowSttSession)
    session.speech_started(1)
    session.write(b"\x01" * 160)
    session.write(b"\x02" * 160)
    session.speech_ended(1)
    session.close(0.5)

    assert events == [
        ("warm_up",),
        ("open", "CA1"),
        ("speech_started", 1),
        0.005,
        ("write", b"\x01" * 160),
        0.005,
        ("write", b"\x02" * 160),
        ("speech_ended", 1),
        ("close", 0.5),
    ]


def test_the_slow_engine_cannot_wrap_itself(settings: Any) -> None:
    settings.STT_SLOW_INNER = " Slow "
    with pytest.raises(ValueError, match="cannot be the slow engine itself"):
        SlowSttEngine.from_settings()


def test_settings_name_the_inner_engine_and_the_delay(settings: Any) -> None:
    settings.STT_SLOW_INNER = "none"
    settings.STT_SLOW_WRITE_MS = 7.0
    engine = SlowSttEngine.from_settings()
    assert engine.write_ms == 7.0
    assert engine.inner.name == "none"
