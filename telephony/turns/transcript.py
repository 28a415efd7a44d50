"""What a call's caller said, as the line publishes it: partials, finals and revisions."""

from dataclasses import dataclass
from typing import Literal

TranscriptKind = Literal["partial", "final", "revision"]


@dataclass(frozen=True, slots=True)
class TranscriptEvent:
    call_sid: str
    kind: TranscriptKind
    text: str
    utterance: int  # 1, 2, ... in the order the local VAD opened them
    offset_ms: int  # where the utterance starts in the caller's audio, from the stream start
    at: float  # wall-clock time (time.time()) the event was published
    # final / revision: from the end of the caller's speech (VAD) to this event.
    latency_ms: float | None = None
    # final: made by the local timeout from the latest partial, not by the engine.
    local: bool = False


def transcript_line(event: TranscriptEvent) -> str:
    """Return the log line of a transcript event, as operators grep it."""
    if event.kind == "partial":
        return f"🟡 [PARTIAL] call={event.call_sid} {event.text}"
    if event.kind == "final":
        local = ", local" if event.local else ""
        return (
            f"✅ [FINAL] call={event.call_sid} {event.text} "
            f"(latency_ms={event.latency_ms or 0.0:.0f}{local})"
        )
    return f"✏️ [REVISED] call={event.call_sid} {event.text}"


def transcript_fields(event: TranscriptEvent) -> dict[str, str | int | float | bool | None]:
    """Return a transcript event's parts by name (a JSON log's fields)."""
    return {
        "line": event.kind.upper(),
        "call": event.call_sid,
        "text": event.text,
        "utterance": event.utterance,
        "latency_ms": event.latency_ms,
        "local": event.local,
    }
