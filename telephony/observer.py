"""Where the line reports what happens: the one seam between the call path and the rest.

The call path (webhook, consumer, session, process start and stop) never imports the code
that stores or shows calls. It reports to a `LineObserver`, and the setting `LINE_OBSERVER`
names the implementation (`calls.observer.LineReports` in this project: the database and the
live page). Each call gets its own `CallObserver` from it. The defaults here do nothing, so
the line runs, and its parts are tested, without any.

Every report is made on the call path (the event loop, the RX/TX/STT threads, a request
thread): implementations hand it over and return at once; they never block. The answers of
`call_answered` and `stream_status`, and `recently_ended`, may read the database: they are asked
from a request's thread or at process start-up, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from telephony.metrics.meters import SecondSample
    from telephony.recording.tap import RecordingTap
    from telephony.session import CallSession
    from telephony.turns.transcript import TranscriptEvent

log = logging.getLogger(__name__)


class CallObserver:
    """What one call reports, from start to end. The default ignores everything."""

    def recording(self, call_sid: str, stream_sid: str) -> RecordingTap | None:
        """Return the tap the call's audio goes to, or None not to record it (once, at start)."""
        return None

    def started(self, session: CallSession) -> None:
        """The stream started and its workers are running."""

    def second(self, sample: SecondSample) -> None:
        """One second of RX/TX figures."""

    def transcript(self, event: TranscriptEvent) -> None:
        """A partial, a FINAL or a revision was published."""

    def event(self, call_sid: str, kind: str, detail: str = "", data: dict | None = None) -> None:
        """Something worth reviewing happened (dtmf, mark, clear, error, ...)."""

    def greeting_played(self, call_sid: str) -> None:
        """Twilio echoed the greeting's end mark: the caller heard all of it."""

    def ended(self, session: CallSession, reason: str, totals: dict[str, Any]) -> None:
        """The call's workers are stopped; `totals` are its final counts."""


class LineObserver:
    """What the line reports as a whole: calls answered, streams opened, process start/stop."""

    def process_started(self) -> None:
        """The process is warm and about to take calls (e.g. close what a dead one left)."""

    def call_answered(
        self, *, call_sid: str, account_sid: str, from_number: str, to_number: str
    ) -> bool:
        """The voice webhook answered a call (called in the request's thread).

        False if the call has already ended (a replayed webhook): nothing is recorded, and the
        call gets no stream token. May read the database.
        """
        return True

    def stream_status(self, *, call_sid: str, event: str, detail: str) -> bool:
        """Twilio's stream status callback said something about a call; False: no such call."""
        return True

    def recently_ended(self, *, within_s: float) -> list[str]:
        """The calls that ended in the last `within_s` seconds (asked once, at start-up)."""
        return []

    def call_observer(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        account_sid: str,
        bad_input: dict[str, int],
    ) -> CallObserver:
        """Return the observer of a call whose stream just started (on the event loop).

        `bad_input` is the call's live count of refused messages by kind.
        """
        return CallObserver()

    def flush(self, timeout: float) -> bool:
        """Wait up to `timeout` s until every report so far is stored; False if not all are."""
        return True


_observer: LineObserver | None = None
_lock = threading.Lock()


def get_line_observer() -> LineObserver:
    """Return the process's line observer, built once from `settings.LINE_OBSERVER`."""
    global _observer
    with _lock:
        if _observer is None:
            path = settings.LINE_OBSERVER
            _observer = import_string(path)() if path else LineObserver()
        return _observer
