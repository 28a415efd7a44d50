"""Where a call's reports go: the recorder (database) and the live admin page (channel layer).

Both hand-offs return at once: the recorder has its own bounded queue and writer thread, and the
channel-layer publish runs as a task on the consumer's event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from calls import live
from calls.recorder import get_recorder

from .meters import SecondSample
from .session import CallObserver, CallSession
from .transcript import TranscriptEvent

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class ReportingObserver(CallObserver):
    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        channel_layer: Any,
        account_sid: str = "",
        bad_input: dict[str, int] | None = None,
    ) -> None:
        self._loop = loop
        self._layer = channel_layer
        self._recorder = get_recorder()
        self._account_sid = account_sid
        self._bad_input = bad_input if bad_input is not None else {}

    def _publish(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a channel-layer publish on the loop without waiting for it."""
        if self._layer is None or self._loop.is_closed():
            coro.close()
            return
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        future.add_done_callback(_log_publish_failure)

    def started(self, session: CallSession) -> None:
        self._recorder.stream_started(
            call_sid=session.call_sid,
            stream_sid=session.stream_sid,
            account_sid=self._account_sid,
            stt_engine=settings.STT_ENGINE,
            stt_language=getattr(session._engine, "language", ""),
            started_at=_now(),
        )
        self._publish(
            live.publish_started(
                self._layer, call_sid=session.call_sid, stream_sid=session.stream_sid, at=_now()
            )
        )

    def second(self, sample: SecondSample) -> None:
        self._recorder.metric(sample)
        self._publish(live.publish_sample(self._layer, sample))

    def transcript(self, event: TranscriptEvent) -> None:
        self._recorder.transcript(event)

    def event(self, call_sid: str, kind: str, detail: str = "", data: dict | None = None) -> None:
        self._recorder.event(call_sid=call_sid, kind=kind, detail=detail, data=data, at=_now())

    def greeting_played(self, call_sid: str) -> None:
        self._recorder.greeting_played(call_sid=call_sid, at=_now())

    def ended(self, session: CallSession, reason: str, totals: dict[str, Any]) -> None:
        totals = {**totals, "bad_input": dict(self._bad_input)}
        self._recorder.stream_ended(
            call_sid=session.call_sid, reason=reason, ended_at=_now(), totals=totals
        )
        self._recorder.flush(session.call_sid, timeout=2.0)
        self._publish(
            live.publish_ended(self._layer, call_sid=session.call_sid, reason=reason, at=_now())
        )


def _log_publish_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("live metrics publish failed: %s", future.exception())
