"""A batch of queued rows, written through `calls.services` in one transaction.

The writes go in the order they depend on each other: call rows first (they make the ids the
other rows point at), then transcripts, samples and events (one `bulk_create` each), then
greetings and ends (an end judges the call from its samples, so it comes after them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from calls import services
from calls.rows import CallAnswer, EventData, GreetingPlayed, Row, StreamEnd, StreamStart
from telephony.metrics.meters import SecondSample
from telephony.turns.transcript import TranscriptEvent


@dataclass(slots=True)
class Writes:
    """One batch sorted into the writes it needs, in the order they must happen."""

    answered: list[CallAnswer] = field(default_factory=list)
    started: list[StreamStart] = field(default_factory=list)
    transcripts: list[TranscriptEvent] = field(default_factory=list)
    samples: list[SecondSample] = field(default_factory=list)
    events: list[EventData] = field(default_factory=list)
    greetings: list[GreetingPlayed] = field(default_factory=list)
    ended: list[StreamEnd] = field(default_factory=list)

    @classmethod
    def of(cls, rows: Iterable[Row]) -> Writes:
        """Sort rows by the write each needs, keeping their order within each write."""
        writes = cls()
        for row in rows:
            match row:
                case CallAnswer():
                    writes.answered.append(row)
                case StreamStart():
                    writes.started.append(row)
                case TranscriptEvent():
                    writes.transcripts.append(row)
                case SecondSample():
                    writes.samples.append(row)
                case EventData():
                    writes.events.append(row)
                case GreetingPlayed():
                    writes.greetings.append(row)
                case StreamEnd():
                    writes.ended.append(row)
                case _:
                    raise TypeError(f"not a row of the calls tables: {row!r}")
        return writes

    def bulk_call_sids(self) -> set[str]:
        """Return the calls the bulk rows (transcripts, samples, events) point at."""
        rows: list[TranscriptEvent | SecondSample | EventData] = [
            *self.transcripts,
            *self.samples,
            *self.events,
        ]
        return {row.call_sid for row in rows}


class BatchWriter:
    """Write batches of rows, remembering each running call's row id between batches.

    One per writer thread: a call's id is trusted across batches only once its row is
    committed, and forgotten when its end is written.
    """

    def __init__(
        self,
        *,
        process: str,
        heartbeat_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = timezone.now,
    ) -> None:
        self.process = process
        self.heartbeat_s = heartbeat_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._call_ids: dict[str, int] = {}
        self._seen_at: dict[str, float] = {}  # per running call: when it was last noted alive

    def write(self, rows: Iterable[Row], *, shed_of: Callable[[str], Mapping[str, int]]) -> None:
        """Write the rows in one transaction; `shed_of(call_sid)` counts what was shed of a call."""
        writes = Writes.of(rows)
        ids: dict[str, int] = {}
        with transaction.atomic():
            for answer in writes.answered:
                ids[answer.call_sid] = services.call_answered(answer).pk
            for start in writes.started:
                ids[start.call_sid] = services.call_stream_started(start, process=self.process).pk
            needed = writes.bulk_call_sids() - ids.keys() - self._call_ids.keys()
            if needed:
                ids.update(services.call_ids_ensure(call_sids=needed, at=self._wall_clock()))
            known = {**self._call_ids, **ids}
            if writes.transcripts:
                services.transcripts_create(events=writes.transcripts, call_ids=known)
            seen: list[str] = []
            if writes.samples:
                services.metric_samples_create(samples=writes.samples, call_ids=known)
                seen = self._heartbeat(writes.samples, known)
            if writes.events:
                services.call_events_create(events=writes.events, call_ids=known)
            for played in writes.greetings:
                services.call_greeting_played(played)
            shed = {end.call_sid: dict(shed_of(end.call_sid)) for end in writes.ended}
            for end in writes.ended:
                services.call_ended(end, shed=shed[end.call_sid])
        # Committed: only now may the ids be trusted across batches.
        self._call_ids.update(ids)
        now = self._clock()
        for call_sid in [*seen, *(start.call_sid for start in writes.started)]:
            self._seen_at[call_sid] = now
        for end in writes.ended:
            self._call_ids.pop(end.call_sid, None)
            self._seen_at.pop(end.call_sid, None)

    def _heartbeat(self, samples: list[SecondSample], ids: Mapping[str, int]) -> list[str]:
        """Note running calls as alive, at most once per `heartbeat_s` each; return which."""
        latest: dict[str, SecondSample] = {}
        for s in samples:
            if s.call_sid not in latest or s.second > latest[s.call_sid].second:
                latest[s.call_sid] = s
        now = self._clock()
        seen = []
        for call_sid, s in latest.items():
            if now - self._seen_at.get(call_sid, float("-inf")) < self.heartbeat_s:
                continue
            services.call_seen(
                call_id=ids[call_sid],
                at=services.from_timestamp(s.at),
                rx_drops=s.rx_drops_total,
                tx_drops=s.tx_drops_total,
            )
            seen.append(call_sid)
        return seen
