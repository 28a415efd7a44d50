"""Every write to the calls tables: the webhook's, the recorder's and the start-up sweep's."""

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from calls import selectors
from calls.models import (
    Call,
    CallEvent,
    MetricSample,
    Recording,
    Transcript,
    recordings_storage,
)
from calls.rows import CallAnswer, EventData, GreetingPlayed, StreamEnd, StreamStart
from telephony.metrics.gonogo import Thresholds, judge
from telephony.metrics.meters import SecondSample
from telephony.turns.transcript import TranscriptEvent

log = logging.getLogger(__name__)

# Totals the stream reports that have columns of their own; the rest land in `Call.extra`.
TOTAL_COLUMNS = ("frames_in", "frames_out", "rx_drops", "tx_drops")


def from_timestamp(ts: float) -> datetime:
    """Return the aware UTC datetime of a `time.time()` value."""
    return datetime.fromtimestamp(ts, tz=UTC)


def as_datetime(at: datetime | float) -> datetime:
    """Return a row's time as an aware datetime (rows carry datetimes or `time.time()` values)."""
    return at if isinstance(at, datetime) else from_timestamp(at)


def call_answered(answer: CallAnswer) -> Call:
    """Create (or complete) the call's row when the voice webhook answers; never an ended one's."""
    at = answer.at or timezone.now()
    call, created = Call.objects.get_or_create(
        call_sid=answer.call_sid,
        defaults={
            "account_sid": answer.account_sid,
            "from_number": answer.from_number,
            "to_number": answer.to_number,
            "answered_at": at,
            "created_at": at,
            "status": Call.Status.ANSWERED,
        },
    )
    if not created and call.status not in Call.UNFINISHED:
        return call  # a replay of an ended call's webhook: the call's record stays as it is
    if not created:
        # The stream got here first (the webhook was slow or retried): keep its status.
        Call.objects.filter(pk=call.pk).update(
            account_sid=answer.account_sid or call.account_sid,
            from_number=answer.from_number or call.from_number,
            to_number=answer.to_number or call.to_number,
            answered_at=call.answered_at or at,
        )
        call.refresh_from_db()
    return call


def call_stream_started(start: StreamStart, *, process: str = "") -> Call:
    """Mark the call active with its stream; create the row if the webhook's is missing.

    `process` is the server process that runs the stream (host:pid).
    """
    call_sid, stream_sid = start.call_sid, start.stream_sid
    started_at = as_datetime(start.started_at)
    call, created = Call.objects.get_or_create(
        call_sid=call_sid, defaults={"created_at": started_at, "status": Call.Status.ACTIVE}
    )
    if not created and call.status not in Call.UNFINISHED:
        # A call that has ended stays ended: the stream is refused at its start, and should one
        # get through (a race, a store outage), its rows never reopen the call or reset it.
        log.warning(
            "call %s has ended (%s): stream %s not recorded", call_sid, call.status, stream_sid
        )
        CallEvent.objects.create(
            call=call,
            kind="refused",
            detail=f"stream {stream_sid} after the call ended",
            at=started_at,
        )
        return call
    if not created and call.stream_sid and call.stream_sid != stream_sid:
        CallEvent.objects.create(
            call=call,
            kind=CallEvent.Kind.RECONNECT,
            detail=f"new stream {stream_sid} (was {call.stream_sid})",
            at=started_at,
        )
    call.stream_sid = stream_sid
    call.account_sid = start.account_sid or call.account_sid
    call.stt_engine = start.stt_engine
    call.stt_language = start.stt_language
    call.started_at = started_at
    call.last_seen_at = started_at
    call.process = process
    call.status = Call.Status.ACTIVE
    call.ended_at = None
    call.end_reason = ""
    call.save()
    return call


def call_ids_ensure(*, call_sids: Iterable[str], at: datetime) -> dict[str, int]:
    """Return the row id of each call; create a bare active row for a call never seen."""
    wanted = set(call_sids)
    ids = dict(Call.objects.filter(call_sid__in=wanted).values_list("call_sid", "id"))
    missing = wanted - ids.keys()
    if missing:
        log.warning("recording %d call(s) with no row yet: %s", len(missing), sorted(missing))
        # ignore_conflicts: the webhook may be creating the same row right now.
        Call.objects.bulk_create(
            [Call(call_sid=sid, created_at=at, status=Call.Status.ACTIVE) for sid in missing],
            ignore_conflicts=True,
        )
        ids.update(Call.objects.filter(call_sid__in=missing).values_list("call_sid", "id"))
    return ids


def transcripts_create(
    *, events: Sequence[TranscriptEvent], call_ids: Mapping[str, int]
) -> list[Transcript]:
    """Write partials, finals and revisions, and count each call's finals."""
    rows = [
        Transcript(
            call_id=call_ids[e.call_sid],
            kind=e.kind,
            text=e.text,
            utterance=e.utterance,
            offset_ms=max(0, e.offset_ms),
            latency_ms=e.latency_ms,
            local=e.local,
            at=from_timestamp(e.at),
        )
        for e in events
    ]
    created = Transcript.objects.bulk_create(rows)
    finals = Counter(call_ids[e.call_sid] for e in events if e.kind == Transcript.Kind.FINAL)
    for call_id, n in finals.items():
        Call.objects.filter(pk=call_id).update(finals=F("finals") + n)
    return created


def metric_samples_create(*, samples: Sequence[SecondSample], call_ids: Mapping[str, int]) -> int:
    """Write per-second samples; a second already recorded for a call is skipped."""
    rows = [
        MetricSample(
            call_id=call_ids[s.call_sid],
            second=max(0, s.second),
            at=from_timestamp(s.at),
            **s.figures(),
        )
        for s in samples
    ]
    # ignore_conflicts: a batch retried after a lost commit acknowledgement must not fail forever.
    MetricSample.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def call_events_create(*, events: Sequence[EventData], call_ids: Mapping[str, int]) -> int:
    """Write call events (an event with no time happened now)."""
    now = timezone.now()
    rows = [
        CallEvent(
            call_id=call_ids[e.call_sid],
            kind=e.kind[:16],
            detail=e.detail[:500],
            data=dict(e.data or {}),
            at=now if e.at is None else as_datetime(e.at),
        )
        for e in events
    ]
    CallEvent.objects.bulk_create(rows)
    return len(rows)


def call_seen(*, call_id: int, at: datetime, rx_drops: int | None, tx_drops: int | None) -> None:
    """Note that a running call is alive, with its running drop totals."""
    updates: dict[str, Any] = {"last_seen_at": at}
    if rx_drops is not None:
        updates["rx_drops"] = rx_drops
    if tx_drops is not None:
        updates["tx_drops"] = tx_drops
    # Only a running call: a late sample must not bring an ended call back.
    Call.objects.filter(pk=call_id, status=Call.Status.ACTIVE).update(**updates)


def call_greeting_played(played: GreetingPlayed) -> None:
    """Record when the greeting finished playing (the first time only)."""
    Call.objects.filter(call_sid=played.call_sid, greeting_played_at__isnull=True).update(
        greeting_played_at=as_datetime(played.at)
    )


def call_ended(end: StreamEnd, *, shed: Mapping[str, int] | None = None) -> Call:
    """Close the call: status, totals, and the GO/NO-GO verdict from its samples.

    `shed` counts the rows of the call the recorder shed, by kind.
    """
    call_sid, totals, status = end.call_sid, end.totals, end.status
    ended_at = as_datetime(end.ended_at)
    with transaction.atomic():
        call, _ = Call.objects.select_for_update().get_or_create(
            call_sid=call_sid, defaults={"created_at": ended_at, "status": status}
        )
        if end.stream_sid and call.stream_sid and end.stream_sid != call.stream_sid:
            # The end of a stream that is not the call's (one refused after the call ended):
            # the call keeps its own totals, times and verdict.
            log.warning(
                "call %s: end of stream %s ignored (the call's stream is %s)",
                call_sid,
                end.stream_sid,
                call.stream_sid,
            )
            return call
        for name in TOTAL_COLUMNS:
            if name in totals:
                setattr(call, name, int(totals[name]))
        call.bad_input = dict(totals.get("bad_input") or {})
        call.extra = {
            k: v for k, v in totals.items() if k not in TOTAL_COLUMNS and k != "bad_input"
        }
        call.shed = dict(shed or {})
        call.status = status
        call.end_reason = end.reason[:200]
        call.ended_at = ended_at
        call.last_seen_at = ended_at
        verdict = judge(
            list(MetricSample.objects.filter(call=call)),
            rx_drops_total=int(totals["rx_drops"]) if "rx_drops" in totals else None,
            writes=selectors.call_write_times(call),
            thresholds=Thresholds(write_ms_p99_max=settings.GO_WRITE_MS_P99_MAX),
        )
        call.go = verdict.go
        call.go_reasons = list(verdict.reasons)
        call.save()
    return call


def calls_mark_interrupted(*, now: datetime, stale_after: timedelta = timedelta(seconds=60)) -> int:
    """Close calls left unfinished by a process that went away; return how many.

    A running call is seen at least every `RECORDER_HEARTBEAT_S` (10 s) while its process lives,
    so with the default `stale_after` this is safe to run while other processes carry calls.
    """
    cutoff = now - stale_after
    never_seen = Q(last_seen_at__isnull=True) & (
        Q(started_at__lt=cutoff) | Q(started_at__isnull=True, created_at__lt=cutoff)
    )
    stale = Call.objects.filter(Q(last_seen_at__lt=cutoff) | never_seen)
    interrupted = stale.filter(status=Call.Status.ACTIVE).update(
        status=Call.Status.INTERRUPTED, end_reason="process went away", ended_at=now
    )
    failed = stale.filter(status=Call.Status.ANSWERED).update(
        status=Call.Status.FAILED, end_reason="stream never started", ended_at=now
    )
    if interrupted or failed:
        log.warning(
            "marked %d call(s) interrupted and %d failed (unfinished, unseen since %s)",
            interrupted,
            failed,
            cutoff.isoformat(),
        )
    return interrupted + failed


def recording_stored(
    *,
    call_sid: str,
    stream_sid: str,
    name: str,
    duration_ms: int,
    size: int,
    dropped_frames: int = 0,
    late_frames: int = 0,
    complete: bool = True,
    at: datetime | None = None,
) -> Recording:
    """Record that a call's recording is in storage under `name`."""
    at = at or timezone.now()
    call_id = call_ids_ensure(call_sids=[call_sid], at=at)[call_sid]
    return Recording.objects.create(
        call_id=call_id,
        stream_sid=stream_sid,
        file=name,
        duration_ms=duration_ms,
        size=size,
        dropped_frames=dropped_frames,
        late_frames=late_frames,
        complete=complete,
        created_at=at,
    )


def recordings_expire(*, before: datetime, dry_run: bool = False) -> list[Recording]:
    """Delete the recordings stored before `before`, file first, then row; return them.

    Safe to run again, or twice at once (cron): a file or row already gone is not an error.
    """
    expired = list(
        Recording.objects.filter(created_at__lt=before)
        .select_related("call")
        .order_by("created_at", "id")
    )
    if dry_run:
        return expired
    storage = recordings_storage()
    for recording in expired:
        name = recording.file.name
        storage.delete(name)  # a file already gone is no error (FileSystemStorage, S3)
        Recording.objects.filter(pk=recording.pk).delete()
        log.info("recording %s of call %s deleted (expired)", name, recording.call_id)
    return expired
