"""A call's reports counted for `/metrics` on their way to the configured observer.

Every call reports through one `CallObserver` (telephony.observer); `MeteredCall` sits in front
of it and takes what Prometheus needs from the same reports: the call's start and end, its
queue depths once a second, each FINAL's latency and each event of the STT engine. It adds
nothing per frame: frames, drops and write times are read from the call's own counters when
scraped (telephony.metrics.scrape).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from telephony.metrics.scrape import (
    STREAM_EVENT_PREFIX,
    CallCounters,
    CallMetrics,
    LineMetrics,
    line_metrics,
)
from telephony.observer import CallObserver

if TYPE_CHECKING:
    from telephony.metrics.meters import SecondSample
    from telephony.recording.tap import RecordingTap
    from telephony.session import CallSession
    from telephony.turns.transcript import TranscriptEvent


def counters_of(totals: dict[str, Any]) -> CallCounters:
    """Return the counters among a call's totals (`CallSession.totals`)."""
    return CallCounters(
        frames_in=int(totals["frames_in"]),
        frames_written=int(totals["frames_written"]),
        frames_out=int(totals["frames_out"]),
        rx_drops=int(totals["rx_drops"]),
        tx_drops=int(totals["tx_drops"]),
    )


def live_counters(session: CallSession) -> CallCounters:
    """Read a running call's counters as `CallSession.totals` counts them (a test holds the two
    equal), from the scrape's thread: reads only."""
    return CallCounters(
        frames_in=session.frames_in,
        frames_written=session.rx.frames_written - session.stt_write_errors,
        frames_out=session.tx.frames_sent,
        rx_drops=session.rx_q.drops_total + session.stt_write_errors,
        tx_drops=session.tx_q.drops_total + session.send_q_drops(),
    )


class MeteredCall(CallObserver):
    """Pass every report on to `inner`; count what `/metrics` shows on the way."""

    def __init__(self, inner: CallObserver, line: LineMetrics | None = None) -> None:
        self.inner = inner
        self._line = line if line is not None else line_metrics()
        self.metrics: CallMetrics | None = None

    def recording(self, call_sid: str, stream_sid: str) -> RecordingTap | None:
        return self.inner.recording(call_sid, stream_sid)

    def started(self, session: CallSession) -> None:
        self.metrics = CallMetrics(
            session.call_sid,
            counters=lambda: live_counters(session),
            write_times=session.rx.write_times.snapshot,
        )
        self._line.call_started(self.metrics)
        self.inner.started(session)

    def second(self, sample: SecondSample) -> None:
        if self.metrics is not None:
            self.metrics.second(rx_q=sample.rx_q, tx_q=sample.tx_q, send_q=sample.send_q)
        self.inner.second(sample)

    def transcript(self, event: TranscriptEvent) -> None:
        if self.metrics is not None and event.kind == "final" and event.latency_ms is not None:
            self.metrics.final(event.latency_ms / 1000, local=event.local)
        self.inner.transcript(event)

    def event(self, call_sid: str, kind: str, detail: str = "", data: dict | None = None) -> None:
        if self.metrics is not None and kind.startswith(STREAM_EVENT_PREFIX):
            self.metrics.stream_event(kind.removeprefix(STREAM_EVENT_PREFIX))
        self.inner.event(call_sid, kind, detail, data)

    def greeting_played(self, call_sid: str) -> None:
        self.inner.greeting_played(call_sid)

    def ended(self, session: CallSession, reason: str, totals: dict[str, Any]) -> None:
        if self.metrics is not None:
            self.metrics.close(counters_of(totals))
            self._line.call_ended(self.metrics, reason)
        self.inner.ended(session, reason, totals)
