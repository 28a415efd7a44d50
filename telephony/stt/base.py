"""The speech-to-text interface every engine implements, and the hypotheses engines report."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Hypothesis:
    """What an engine heard: interim (`is_final=False`) or final text for the current utterance."""

    text: str
    is_final: bool
    # Engines that know their own utterance boundaries (Google) may number them; the endpointer
    # otherwise attributes a hypothesis to the utterance the local VAD is in.
    utterance: int | None = None


HypothesisSink = Callable[[Hypothesis], None]
# (kind, detail): something about the engine worth a call event (a reconnect, a fallback).
EventSink = Callable[[str, str], None]


class SttSession(ABC):
    """One call's recognition stream. `write` is called from the RX thread and must not block."""

    @abstractmethod
    def write(self, frame: bytes) -> None:
        """Take one 20 ms frame of 8 kHz mu-law (160 bytes); return at once (well under 1 ms)."""

    def speech_started(self, utterance: int) -> None:  # noqa: B027 - optional hook, no-op default
        """The local VAD heard speech begin (utterance numbers start at 1)."""

    def speech_ended(self, utterance: int) -> None:  # noqa: B027 - optional hook, no-op default
        """The local VAD heard speech end (after the hangover)."""

    @abstractmethod
    def close(self, timeout: float = 1.0) -> None:
        """Finish: report the last final if any, stop every thread, within `timeout` seconds."""


class SttEngine(ABC):
    """A process-wide engine (models, clients) that opens one session per call."""

    name: str = "?"
    language: str = ""

    def warm_up(self) -> None:  # noqa: B027 - optional hook, no-op default
        """Load models or clients at process start, so the first call does not wait."""

    @abstractmethod
    def open(
        self, call_sid: str, on_hypothesis: HypothesisSink, *, on_event: EventSink | None = None
    ) -> SttSession:
        """Open a session; may block (network, model), so callers run it off the audio path."""
