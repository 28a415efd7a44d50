"""Reads for the admin's call review, the live page and the GO/NO-GO check."""

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import reduce
from operator import or_
from typing import Any

from django.db.models import Q, QuerySet

from calls.live import sample_message
from calls.models import Call, CallEvent, MetricSample, Recording, Transcript
from telephony.metrics.histogram import Snapshot
from telephony.metrics.meters import FIGURES, SecondSample
from telephony.turns.transcript import TranscriptEvent

log = logging.getLogger(__name__)

LIVE_HISTORY_S = 60  # seconds of figures a live page starts with, per call
# An active call not seen for this long is left off the live page (its process is likely gone;
# `calls_mark_interrupted` closes it).
LIVE_STALE_AFTER = timedelta(seconds=120)


@dataclass(slots=True)
class Utterance:
    """One thing the caller said: its FINAL (revised or not) and the partials before it."""

    number: int
    offset_ms: int
    partials: list[Transcript] = field(default_factory=list)
    final: Transcript | None = None
    revision: Transcript | None = None  # the engine's final that replaced a local one

    @property
    def text(self) -> str:
        """Return the best text: the revision, else the FINAL, else the latest partial."""
        best = self.revision or self.final or (self.partials[-1] if self.partials else None)
        return best.text if best else ""

    @property
    def at(self) -> datetime | None:
        """Return when the text shown was published."""
        best = self.revision or self.final or (self.partials[-1] if self.partials else None)
        return best.at if best else None


def call_known(*, call_sid: str) -> bool:
    """Return whether the call has a row (the voice webhook answered it, or its stream ran)."""
    return Call.objects.filter(call_sid=call_sid).exists()


def calls_ended_since(*, since: datetime) -> list[str]:
    """Return the CallSids of the calls that ended (or were closed) at `since` or later."""
    ended = Call.objects.exclude(status__in=Call.UNFINISHED).filter(ended_at__gte=since)
    return list(ended.values_list("call_sid", flat=True))


def call_conversation(*, call: Call) -> list[Utterance]:
    """Return the caller's utterances in order, each with its partial history."""
    utterances: dict[int, Utterance] = {}
    for row in Transcript.objects.filter(call=call).order_by("utterance", "at", "id"):
        u = utterances.setdefault(row.utterance, Utterance(row.utterance, row.offset_ms))
        if row.kind == Transcript.Kind.PARTIAL:
            u.partials.append(row)
        elif row.kind == Transcript.Kind.FINAL:
            u.final = u.final or row  # a second FINAL would be a bug upstream: keep the first
        else:
            u.revision = row
    return sorted(utterances.values(), key=lambda u: (u.offset_ms, u.number))


def call_events(*, call: Call) -> QuerySet[CallEvent]:
    """Return the call's events in time order."""
    return CallEvent.objects.filter(call=call).order_by("at", "id")


def call_samples(*, call: Call) -> list[MetricSample]:
    """Return the call's per-second figures in order."""
    return list(MetricSample.objects.filter(call=call).order_by("second"))


def calls_live_snapshot(*, now: datetime, history_s: int = LIVE_HISTORY_S) -> list[dict[str, Any]]:
    """Return the running calls with their recent figures, as the live page starts from them."""
    calls = list(
        Call.objects.filter(status=Call.Status.ACTIVE, last_seen_at__gte=now - LIVE_STALE_AFTER)
        .order_by("started_at")
        .only("id", "call_sid", "stream_sid", "from_number", "started_at")
    )
    if not calls:
        return []
    # One query through the (call, second) index: each call's last `history_s` seconds.
    windows = [
        Q(call_id=c.pk, second__gte=max(0, int((now - c.started_at).total_seconds()) - history_s))
        for c in calls
        if c.started_at
    ]
    samples: dict[int, list[dict[str, Any]]] = {c.pk: [] for c in calls}
    if windows:
        rows = MetricSample.objects.filter(reduce(or_, windows)).order_by("call_id", "second")
        sids = {c.pk: c.call_sid for c in calls}
        for s in rows:
            samples[s.call_id].append(sample_message(s, call_sid=sids[s.call_id], at=s.at))
    return [
        {
            "call_sid": c.call_sid,
            "stream_sid": c.stream_sid,
            "from_number": c.from_number,
            "started_at": c.started_at.timestamp() if c.started_at else None,
            "samples": samples[c.pk],
        }
        for c in calls
    ]


def as_second(row: MetricSample, call_sid: str) -> SecondSample:
    """Return a stored second as the session logged it."""
    return SecondSample(
        call_sid=call_sid,
        second=row.second,
        at=row.at.timestamp(),
        **{name: getattr(row, name) for name in FIGURES},
    )


def as_event(row: Transcript, call_sid: str) -> TranscriptEvent:
    """Return a stored transcript row as the session published it."""
    return TranscriptEvent(
        call_sid=call_sid,
        kind=row.kind,  # type: ignore[arg-type]
        text=row.text,
        utterance=row.utterance,
        offset_ms=row.offset_ms,
        at=row.at.timestamp(),
        latency_ms=row.latency_ms,
        local=row.local,
    )


def seconds_recorded_after(
    *, call_sids: Collection[str], after_id: int
) -> tuple[list[SecondSample], int]:
    """Return the calls' seconds recorded after row `after_id`, in order, and the last row id."""
    rows = MetricSample.objects.filter(id__gt=after_id, call__call_sid__in=list(call_sids))
    seconds = []
    for row in rows.select_related("call").order_by("id"):
        after_id = row.id
        seconds.append(as_second(row, row.call.call_sid))
    return seconds, after_id


def transcripts_recorded_after(
    *, call_sids: Collection[str], after_id: int
) -> tuple[list[TranscriptEvent], int]:
    """Return the calls' transcript events recorded after row `after_id`, and the last row id."""
    rows = Transcript.objects.filter(id__gt=after_id, call__call_sid__in=list(call_sids))
    events = []
    for row in rows.select_related("call").order_by("id"):
        after_id = row.id
        events.append(as_event(row, row.call.call_sid))
    return events, after_id


def calls_by_sid(*, call_sids: Collection[str]) -> dict[str, Call]:
    """Return the call rows recorded so far of the given CallSids."""
    return {call.call_sid: call for call in Call.objects.filter(call_sid__in=list(call_sids))}


def call_write_times(call: Call) -> Snapshot | None:
    """Return the time of every STT write of an ended call, if its stream reported them."""
    encoded = call.extra.get("write_ms_hist")
    if not encoded:
        return None
    try:
        return Snapshot.decode(str(encoded))
    except ValueError as exc:
        log.warning("call %s: write times unreadable (%s); judged per second", call.call_sid, exc)
        return None


def call_recordings(*, call: Call) -> list[Recording]:
    """Return the call's recordings (one per stream; usually one), oldest first."""
    return list(Recording.objects.filter(call=call).order_by("created_at", "id"))
