"""What a call reports for the calls tables, one frozen dataclass per kind of row (no I/O).

The services write these rows and the recorder queues them, so each row's fields are stated
once, here. Transcripts and per-second figures come as the line's own types
(`TranscriptEvent`, `SecondSample`). A time is a datetime or a `time.time()` value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from telephony.metrics.meters import SecondSample
from telephony.turns.transcript import TranscriptEvent

# The kinds the recorder counts rows by; a transcript's kind is its own (partial, final, revision).
ANSWERED, STARTED, EVENT, GREETING, ENDED = "answered", "started", "event", "greeting", "ended"
PARTIAL = "partial"
METRIC = "metric"


@dataclass(frozen=True, slots=True)
class CallAnswer:
    """The voice webhook answered a call."""

    KIND: ClassVar[str] = ANSWERED

    call_sid: str
    account_sid: str = ""
    from_number: str = ""
    to_number: str = ""
    at: datetime | None = None  # None: when it is written (or queued)


@dataclass(frozen=True, slots=True)
class StreamStart:
    """A call's media stream started."""

    KIND: ClassVar[str] = STARTED

    call_sid: str
    stream_sid: str
    started_at: datetime | float
    account_sid: str = ""
    stt_engine: str = ""
    stt_language: str = ""


@dataclass(frozen=True, slots=True)
class EventData:
    """Something during a call worth reviewing (dtmf, mark, clear, error, ...)."""

    KIND: ClassVar[str] = EVENT

    call_sid: str
    kind: str  # the event's kind (`CallEvent.Kind`), not the row's
    detail: str = ""
    data: Mapping[str, Any] | None = None
    at: datetime | float | None = None  # when it happened; None: when it is written (or queued)

    def __post_init__(self) -> None:
        # A copy: the reporter may reuse its dict after handing it over.
        object.__setattr__(self, "data", dict(self.data or {}))


@dataclass(frozen=True, slots=True)
class GreetingPlayed:
    """The greeting finished playing."""

    KIND: ClassVar[str] = GREETING

    call_sid: str
    at: datetime | float


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """A call's media stream ended, with its totals (the verdict is judged when written)."""

    KIND: ClassVar[str] = ENDED

    call_sid: str
    reason: str
    ended_at: datetime | float
    totals: Mapping[str, Any]
    status: str = "ended"  # `Call.Status`
    stream_sid: str = ""  # the stream that ended ("": the call's, whichever it is)

    def __post_init__(self) -> None:
        # A copy: the reporter may reuse its dict after handing it over.
        object.__setattr__(self, "totals", dict(self.totals))


Row = (
    CallAnswer
    | StreamStart
    | EventData
    | GreetingPlayed
    | StreamEnd
    | TranscriptEvent
    | SecondSample
)


def kind_of(row: Row) -> str:
    """Return the kind the recorder counts `row` as."""
    if isinstance(row, TranscriptEvent):
        return row.kind
    if isinstance(row, SecondSample):
        return METRIC
    return row.KIND
