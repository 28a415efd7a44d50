"""The storing side of call recordings: the process's writer, and its files into Django storage.

`telephony.recording` writes each call's stereo WAV to a local spool as the call goes and never
imports Django; this module gives it the one thing it lacks: where a finished file goes. That
is `STORAGES["recordings"]` (files under the media root by default, any django-storages
backend in production) under `<YYYY>/<MM>/<DD>/<CallSid>.<StreamSid>.wav`, and a `Recording`
row. The line observer (`calls.observer`) asks here for each call's tap when `RECORDING` is on.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from datetime import datetime

from django.conf import settings
from django.core.files import File
from django.db import close_old_connections
from django.utils import timezone

from calls import services
from calls.models import Recording, recordings_storage
from telephony.recording.tap import RecordingTap
from telephony.recording.writer import Finished, RecordingWriter, spooled_left_behind

log = logging.getLogger(__name__)

_writer: RecordingWriter | None = None
_writer_pid: int | None = None
_lock = threading.Lock()


def storage_name(finished: Finished, at: datetime) -> str:
    """Return where a recording is kept in its storage: by day, then call and stream."""
    return f"{at:%Y/%m/%d}/{finished.call_sid}.{finished.stream_sid}.wav"


def store(finished: Finished) -> Recording:
    """Save a finished spool file into the recordings storage and record its row."""
    at = timezone.now()
    storage = recordings_storage()
    try:
        with finished.path.open("rb") as file:
            name = storage.save(storage_name(finished, at), File(file))
        recording = services.recording_stored(
            call_sid=finished.call_sid,
            stream_sid=finished.stream_sid,
            name=name,
            duration_ms=finished.duration_ms,
            size=finished.path.stat().st_size,
            dropped_frames=finished.dropped,
            late_frames=finished.late,
            complete=finished.complete,
            at=at,
        )
    finally:
        close_old_connections()  # a long-lived thread: give the connection back when done
    log.info(
        "call=%s recording stored: %s (%.1f s, %d bytes%s)",
        finished.call_sid,
        name,
        finished.duration_ms / 1000,
        recording.size,
        "" if finished.complete else ", cut short by a crash",
    )
    return recording


def get_recording_writer() -> RecordingWriter:
    """Return the process's recording writer (its threads start with the first call)."""
    global _writer, _writer_pid
    with _lock:
        if _writer is None or _writer_pid != os.getpid():  # a forked child needs its own
            _writer = RecordingWriter(spool_dir=settings.RECORDING_SPOOL_DIR, store=store)
            _writer_pid = os.getpid()
            atexit.register(_writer.flush, 2.0)
        return _writer


def recording_tap(call_sid: str, stream_sid: str) -> RecordingTap | None:
    """Return a new call's tap, written by the process's writer; None when RECORDING is off."""
    if not settings.RECORDING:
        return None
    tap = RecordingTap(call_sid, max_frames=settings.RECORDING_QUEUE_FRAMES)
    get_recording_writer().add(tap, stream_sid=stream_sid)
    return tap


def flush(timeout: float) -> bool:
    """Wait until every ended call's recording is stored (False if not within `timeout` s)."""
    with _lock:
        writer = _writer if _writer_pid == os.getpid() else None
    return writer.flush(timeout) if writer is not None else True


def store_left_behind() -> int:
    """Store the spool files a process that is gone left (cut calls, failed stores); how many."""
    stored = 0
    for finished in spooled_left_behind(settings.RECORDING_SPOOL_DIR):
        try:
            store(finished)
        except Exception:  # stays in the spool for the next start
            log.exception("spooled recording %s not stored", finished.path)
            continue
        finished.path.unlink(missing_ok=True)
        stored += 1
    return stored
