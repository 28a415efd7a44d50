"""A deliberately slow STT engine, for tests and drills only: never set it in production.

`STT_ENGINE=slow` wraps another engine (`STT_SLOW_INNER`, default `whisper`) and makes every
`write` block for `STT_SLOW_WRITE_MS` before passing the frame on. That is the fault
`manage.py gonogo` exists to catch: an STT write must only enqueue, and one that blocks a few
milliseconds shows as write_ms p99 >= 1 (NO-GO). Past 20 ms per frame the RX thread falls
behind its 20 ms cadence, its queue climbs and, once RX_QUEUE_FRAMES (200: 4 s) are full,
drops frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from telephony.stt.base import EventSink, HypothesisSink, SttEngine, SttSession


class SlowSttSession(SttSession):
    """Pass every frame on to the inner session after blocking for `delay_s`."""

    def __init__(
        self, inner: SttSession, delay_s: float, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.inner = inner
        self._delay_s = delay_s
        self._sleep = sleep

    def write(self, frame: bytes) -> None:
        """Block (the injected fault), then write."""
        self._sleep(self._delay_s)
        self.inner.write(frame)

    def speech_started(self, utterance: int) -> None:
        """Pass the VAD's news on."""
        self.inner.speech_started(utterance)

    def speech_ended(self, utterance: int) -> None:
        """Pass the VAD's news on."""
        self.inner.speech_ended(utterance)

    def close(self, timeout: float = 1.0) -> None:
        """Close the inner session."""
        self.inner.close(timeout)


class SlowSttEngine(SttEngine):
    """STT_ENGINE=slow: another engine whose writes block on purpose."""

    name = "slow"

    def __init__(
        self,
        inner: Callable[[], SttEngine],
        write_ms: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`inner` returns the engine to wrap (looked up on first use, see `from_settings`)."""
        self._inner = inner
        self.write_ms = write_ms
        self._sleep = sleep

    @classmethod
    def from_settings(cls) -> SlowSttEngine:
        """Wrap the engine named by STT_SLOW_INNER, slowed by STT_SLOW_WRITE_MS."""
        from django.conf import settings

        from telephony.stt import get_stt_engine

        inner = settings.STT_SLOW_INNER.strip().lower()
        if inner == cls.name:
            raise ValueError("STT_SLOW_INNER cannot be the slow engine itself")
        # Looked up lazily: the registry builds this engine under its lock, which is not
        # reentrant, so asking it for the inner engine from here would deadlock.
        return cls(lambda: get_stt_engine(inner), settings.STT_SLOW_WRITE_MS)

    @property
    def inner(self) -> SttEngine:
        """The engine made slow."""
        return self._inner()

    @property
    def language(self) -> str:  # type: ignore[override]
        """The inner engine's language."""
        return self.inner.language

    def warm_up(self) -> None:
        """Warm the inner engine up."""
        self.inner.warm_up()

    def open(
        self, call_sid: str, on_hypothesis: HypothesisSink, *, on_event: EventSink | None = None
    ) -> SlowSttSession:
        """Open the inner engine's session and slow its writes."""
        return SlowSttSession(
            self.inner.open(call_sid, on_hypothesis, on_event=on_event),
            self.write_ms / 1000.0,
            self._sleep,
        )
