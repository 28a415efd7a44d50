"""What a call leaves for review: the call, its transcript, figures, events and recording."""

from datetime import timedelta

from django.core.files.storage import Storage, storages
from django.db import models
from django.utils import timezone


class Call(models.Model):
    """One phone call, from the webhook's answer to the end of its media stream."""

    class Status(models.TextChoices):
        ANSWERED = "answered", "answered"  # the webhook answered; no stream yet
        ACTIVE = "active", "active"  # the media stream is running
        ENDED = "ended", "ended"
        INTERRUPTED = "interrupted", "interrupted"  # its process went away mid-call
        FAILED = "failed", "failed"

    UNFINISHED = (Status.ANSWERED, Status.ACTIVE)

    call_sid = models.CharField("CallSid", max_length=64, unique=True)
    stream_sid = models.CharField("StreamSid", max_length=64, blank=True, db_index=True)
    account_sid = models.CharField("AccountSid", max_length=64, blank=True)
    from_number = models.CharField("caller", max_length=32, blank=True)
    to_number = models.CharField("called", max_length=32, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ANSWERED)
    # When the row was first written (webhook or stream start): the admin's date and ordering.
    created_at = models.DateTimeField(default=timezone.now)
    answered_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=200, blank=True)
    greeting_played_at = models.DateTimeField(null=True, blank=True)
    stt_engine = models.CharField("STT engine", max_length=32, blank=True)
    stt_language = models.CharField("STT language", max_length=16, blank=True)
    # The server process that ran the stream (host:pid), and when it last wrote for the call:
    # a call whose process is gone stops being seen and can be marked interrupted.
    process = models.CharField(max_length=120, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    frames_in = models.PositiveBigIntegerField(default=0)
    frames_out = models.PositiveBigIntegerField(default=0)
    rx_drops = models.PositiveBigIntegerField("RX drops", default=0)
    tx_drops = models.PositiveBigIntegerField("TX drops", default=0)
    finals = models.PositiveIntegerField(default=0)  # kept by the recorder: the list sorts on it
    bad_input = models.JSONField(default=dict, blank=True)  # malformed messages by kind
    shed = models.JSONField(default=dict, blank=True)  # rows the recorder shed, by kind
    extra = models.JSONField(default=dict, blank=True)  # any other totals the stream reported

    go = models.BooleanField("GO", null=True, blank=True)  # None: not judged (too short, running)
    go_reasons = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ("-created_at",)
        indexes = (
            models.Index(fields=["-created_at"], name="call_created_idx"),
            models.Index(fields=["status", "-created_at"], name="call_status_idx"),
            models.Index(fields=["go", "-created_at"], name="call_go_idx"),
            models.Index(fields=["stt_engine", "-created_at"], name="call_engine_idx"),
            models.Index(fields=["from_number"], name="call_from_idx"),
        )

    def __str__(self) -> str:
        return self.call_sid

    @property
    def duration(self) -> timedelta | None:
        """Return how long the stream ran (so far, for a running call)."""
        if self.started_at is None:
            return None
        return (self.ended_at or timezone.now()) - self.started_at


class Transcript(models.Model):
    """One published partial, FINAL or revision of what the caller said."""

    class Kind(models.TextChoices):
        PARTIAL = "partial", "partial"
        FINAL = "final", "final"
        REVISION = "revision", "revision"  # an engine final that replaced a local one

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="transcripts")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    text = models.TextField()
    utterance = models.PositiveIntegerField()
    offset_ms = models.PositiveIntegerField()  # utterance start, from the stream start
    latency_ms = models.FloatField(null=True, blank=True)
    local = models.BooleanField(default=False)  # made by the local timeout, not the engine
    at = models.DateTimeField()

    class Meta:
        ordering = ("call", "utterance", "at", "id")
        indexes = (models.Index(fields=["call", "utterance", "at"], name="transcript_call_idx"),)

    def __str__(self) -> str:
        return f"{self.kind} #{self.utterance}: {self.text[:40]}"


class MetricSample(models.Model):
    """One call's `[RX]`/`[TX]` figures for one second."""

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="samples")
    second = models.PositiveIntegerField()  # whole seconds since the stream started
    at = models.DateTimeField()
    fps_in = models.PositiveIntegerField()
    rx_q = models.PositiveIntegerField()
    rx_drops = models.PositiveIntegerField()
    rx_drops_total = models.PositiveBigIntegerField()
    write_ms = models.FloatField()
    tx_fps = models.PositiveIntegerField()
    tx_q = models.PositiveIntegerField()
    tx_drops = models.PositiveIntegerField()
    tx_drops_total = models.PositiveBigIntegerField()
    send_q = models.PositiveIntegerField()
    mark_rtt_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ("call", "second")
        constraints = (
            # Also the index the chart and the live snapshot read through.
            models.UniqueConstraint(fields=["call", "second"], name="sample_call_second_uniq"),
        )

    def __str__(self) -> str:
        return f"{self.call_id}@{self.second}s"


class CallEvent(models.Model):
    """Something during a call worth reviewing: a DTMF digit, a mark, a clear, an error."""

    class Kind(models.TextChoices):
        START = "start", "start"
        GREETING = "greeting", "greeting"
        DTMF = "dtmf", "DTMF"
        MARK = "mark", "mark"
        CLEAR = "clear", "clear"
        RECONNECT = "reconnect", "reconnect"
        STT = "stt", "STT"
        TTS = "tts", "TTS"
        ERROR = "error", "error"
        STOP = "stop", "stop"
        OTHER = "other", "other"

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="events")
    # Free text up to 16 characters: the kinds above are the known ones, others are kept as sent.
    kind = models.CharField(max_length=16, choices=Kind.choices)
    detail = models.CharField(max_length=500, blank=True)
    data = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ("call", "at", "id")
        indexes = (
            models.Index(fields=["call", "at"], name="event_call_idx"),
            models.Index(fields=["kind"], name="event_kind_idx"),
        )

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail[:40]}"


def recordings_storage() -> Storage:
    """Return the storage recordings live in (`STORAGES["recordings"]`)."""
    return storages["recordings"]


class Recording(models.Model):
    """Both sides of one call's stream as heard: stereo mu-law WAV, caller left, line right."""

    CONTENT_TYPE = "audio/wav"

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="recordings")
    stream_sid = models.CharField("StreamSid", max_length=64, blank=True)
    # Served only through the admin's permission-checked view: the storage has no public URL.
    # Read and delete through `recordings_storage()`: the field keeps the storage it was built with.
    file = models.FileField(storage=recordings_storage, max_length=255)
    duration_ms = models.PositiveIntegerField()
    size = models.PositiveBigIntegerField("bytes")
    dropped_frames = models.PositiveIntegerField(default=0)  # the writer fell behind: silence
    late_frames = models.PositiveIntegerField(default=0)
    # False: its process died mid-call and the file was stored from the spool at the next start.
    complete = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ("call", "created_at", "id")
        permissions = (("listen_recording", "Can listen to and download call recordings"),)

    def __str__(self) -> str:
        return self.file.name
