"""The line's reports, stored and shown: the recorder (database) and the live page (channel layer).

`telephony` reports to the observer `settings.LINE_OBSERVER` names (`LineReports`, here); it
never imports this app. Every hand-off returns at once: the recorder has its own bounded queue
and writer thread, and a channel-layer publish runs as a task on the call's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from calls import live, recordings, selectors, services
from calls.models import Call
from calls.recorder import get_recorder
from calls.rows import CallAnswer
from telephony.metrics.meters import SecondSample
from telephony.observer import CallObserver, LineObserver
from telephony.recording.tap import RecordingTap
from telephony.session import CallSession
from telephony.turns.transcript import TranscriptEvent

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class LineReports(LineObserver):
    """Store what the line reports in the calls tables, and publish live figures."""

    def process_started(self) -> None:
        """Mark calls a crashed process left active as interrupted (safe beside live processes)."""
        try:
            services.calls_mark_interrupted(now=timezone.now())
        except (DatabaseError, RuntimeError) as exc:  # no database yet (or tests): not fatal
            log.warning("start-up sweep of abandoned calls skipped: %s", exc)
        # Recordings a dead process left in the spool: stored in the background (a bucket may
        # be slow), so the process takes calls at once.
        threading.Thread(target=_store_left_behind, name="recording-recover", daemon=True).start()

    def call_answered(
        self, *, call_sid: str, account_sid: str, from_number: str, to_number: str
    ) -> bool:
        """Write the call's row now, so the admin shows it before its stream starts.

        False when the row says the call has ended: then nothing is written (one query, the
        same the webhook always made).
        """
        answer = CallAnswer(
            call_sid=call_sid, account_sid=account_sid, from_number=from_number, to_number=to_number
        )
        try:
            return services.call_answered(answer).status in Call.UNFINISHED
        except DatabaseError as exc:
            # The caller must still be answered: the recorder keeps the row until the DB is back.
            log.warning("call %s: database unavailable at answer (%s); row queued", call_sid, exc)
            get_recorder().record(answer)
            return True

    def stream_status(self, *, call_sid: str, event: str, detail: str) -> bool:
        """Keep Twilio's stream status callback as a call event; False for a call never seen."""
        # A callback never makes a call: the webhook that answered it wrote its row first.
        try:
            known = selectors.call_known(call_sid=call_sid)
        except DatabaseError as exc:
            # Not known to be unknown: keep it (queued until the database is back).
            log.warning("call %s: database unavailable at a stream status (%s)", call_sid, exc)
            known = True
        if not known:
            return False
        get_recorder().event(call_sid=call_sid, kind="stream_status", detail=f"{event} {detail}")
        return True

    def recently_ended(self, *, within_s: float) -> list[str]:
        """The calls whose rows say they ended in the last `within_s` seconds."""
        since = timezone.now() - timedelta(seconds=within_s)
        try:
            return selectors.calls_ended_since(since=since)
        except (DatabaseError, RuntimeError) as exc:  # no database yet (or tests): not fatal
            log.warning("calls ended before start-up not read: %s", exc)
            return []

    def call_observer(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        account_sid: str,
        bad_input: dict[str, int],
    ) -> CallReports:
        """Return the observer of one call, publishing on its event loop."""
        return CallReports(
            loop=loop,
            channel_layer=get_channel_layer(),
            account_sid=account_sid,
            bad_input=bad_input,
        )

    def flush(self, timeout: float) -> bool:
        """Wait for the recorder to write everything queued so far, and the recordings."""
        deadline = time.monotonic() + timeout
        rows = get_recorder().flush(timeout=timeout)
        return recordings.flush(max(0.1, deadline - time.monotonic())) and rows


class CallReports(CallObserver):
    """One call's reports: rows through the recorder, figures to the live page."""

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

    def recording(self, call_sid: str, stream_sid: str) -> RecordingTap | None:
        return recordings.recording_tap(call_sid, stream_sid)

    def started(self, session: CallSession) -> None:
        self._recorder.stream_started(
            call_sid=session.call_sid,
            stream_sid=session.stream_sid,
            account_sid=self._account_sid,
            stt_engine=settings.STT_ENGINE,
            stt_language=getattr(session.stt_engine, "language", ""),
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
        if event.kind != "partial":  # the live page shows the last words, not every guess
            self._said(event.call_sid, "caller", event.text)

    def event(self, call_sid: str, kind: str, detail: str = "", data: dict | None = None) -> None:
        self._recorder.event(call_sid=call_sid, kind=kind, detail=detail, data=data, at=_now())
        if kind == "prompt":
            self._said(call_sid, "line", detail)

    def _said(self, call_sid: str, side: str, text: str) -> None:
        self._publish(
            live.publish_said(self._layer, call_sid=call_sid, side=side, text=text, at=_now())
        )

    def greeting_played(self, call_sid: str) -> None:
        self._recorder.greeting_played(call_sid=call_sid, at=_now())

    def ended(self, session: CallSession, reason: str, totals: dict[str, Any]) -> None:
        totals = {**totals, "bad_input": dict(self._bad_input)}
        self._recorder.stream_ended(
            call_sid=session.call_sid,
            reason=reason,
            ended_at=_now(),
            totals=totals,
            stream_sid=session.stream_sid,
        )
        self._recorder.flush(session.call_sid, timeout=2.0)
        self._publish(
            live.publish_ended(self._layer, call_sid=session.call_sid, reason=reason, at=_now())
        )


def _store_left_behind() -> None:
    try:
        stored = recordings.store_left_behind()
    except Exception:  # the spool stays as it is, for the next start
        log.exception("spooled recordings left behind not stored")
        return
    if stored:
        log.warning("stored %d recording(s) a previous process left in the spool", stored)


def _log_publish_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("live metrics publish failed: %s", future.exception())
