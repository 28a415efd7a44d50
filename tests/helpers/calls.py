"""Calls written straight through the services, as the recorder writes them."""

from __future__ import annotations

from datetime import UTC, datetime

from calls import services
from calls.models import Call
from calls.rows import StreamStart
from tests.helpers.figures import T0

START = datetime.fromtimestamp(T0, tz=UTC)


def started(
    call_sid: str = "CA1",
    *,
    stream_sid: str = "MZ1",
    started_at: datetime | float = START,
    process: str = "",
) -> Call:
    """Return a call whose stream started (at START unless told), on the embedded engine."""
    return services.call_stream_started(
        StreamStart(
            call_sid=call_sid,
            stream_sid=stream_sid,
            started_at=started_at,
            stt_engine="whisper",
            stt_language="en",
        ),
        process=process,
    )
