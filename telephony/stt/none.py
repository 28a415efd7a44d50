"""A sink engine for transport benchmarks: takes every frame, recognizes nothing."""

from __future__ import annotations

import threading

from telephony.stt.base import EventSink, HypothesisSink, SttEngine, SttSession


class NullSttSession(SttSession):
    """Count what arrives; report nothing."""

    def __init__(self, call_sid: str) -> None:
        self.call_sid = call_sid
        self.frames = 0
        self.bytes_written = 0
        self.closed = False

    def write(self, frame: bytes) -> None:
        """Count the frame and drop it."""
        self.frames += 1
        self.bytes_written += len(frame)

    def close(self, timeout: float = 1.0) -> None:
        """Nothing to finish."""
        self.closed = True


class NullSttEngine(SttEngine):
    """STT_ENGINE=none: measures the call path without a recognizer's cost."""

    name = "none"
    language = ""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sessions_opened = 0

    @classmethod
    def from_settings(cls) -> NullSttEngine:
        """Build the engine (it has no settings)."""
        return cls()

    def open(
        self, call_sid: str, on_hypothesis: HypothesisSink, *, on_event: EventSink | None = None
    ) -> NullSttSession:
        """Open a counting session; `on_hypothesis` is never called."""
        with self._lock:
            self.sessions_opened += 1
        return NullSttSession(call_sid)
