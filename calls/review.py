"""A call laid out for review: who spoke when, as a timeline, WebVTT captions and transcripts.

Times are milliseconds on the call's timeline (the recording's, from the stream start). The
caller's utterances start where the recognizer placed them in the caller's audio; each ends
where the FINAL says the speech ended (its time less its latency). The line's prompts start
where the session queued them and last their length, or up to the barge-in that cut them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from calls.models import Call, CallEvent
from calls.selectors import Utterance

Side = Literal["caller", "line"]
MIN_CUE_MS = 800  # a caption shorter than this cannot be read


@dataclass(frozen=True, slots=True)
class Cue:
    """One thing said, by the caller or the line, on the call's timeline."""

    side: Side
    start_ms: int
    end_ms: int
    text: str
    label: str = ""  # the line's prompt label, or the caller's utterance number
    final: bool = True  # the caller's: a FINAL (or revision) came; else the latest partial
    interrupted: bool = False  # the line's: cut short by the caller's barge-in


def _ms_after(at: datetime | None, start: datetime | None) -> int | None:
    if at is None or start is None:
        return None
    return max(0, round((at - start).total_seconds() * 1000))


def caller_cues(call: Call, conversation: Iterable[Utterance]) -> list[Cue]:
    """Return the caller's utterances as cues."""
    cues = []
    for u in conversation:
        best = u.revision or u.final
        end = _ms_after(u.at, call.started_at)
        if end is not None and best is not None and best.latency_ms is not None:
            end -= round(best.latency_ms)  # the FINAL came this long after the speech ended
        start = u.offset_ms
        end = max(start + MIN_CUE_MS, end or 0)
        cues.append(Cue("caller", start, end, u.text, label=str(u.number), final=best is not None))
    return cues


def line_cues(events: Iterable[CallEvent]) -> list[Cue]:
    """Return the line's prompts (from their `prompt` events), cut where a barge-in cut them."""
    cues: dict[str, Cue] = {}
    for event in events:
        data = event.data or {}
        if event.kind == "prompt" and "offset_ms" in data:
            label = str(data.get("label", ""))
            start = int(data["offset_ms"])
            end = start + max(MIN_CUE_MS, int(data.get("duration_ms", 0)))
            cues[label] = Cue("line", start, end, event.detail, label=label)
        elif event.kind == "barge_in" and event.detail in cues:
            cue = cues[event.detail]
            heard = int(data.get("heard_ms", cue.end_ms - cue.start_ms))
            end = max(cue.start_ms + MIN_CUE_MS, min(cue.end_ms, cue.start_ms + heard))
            cues[event.detail] = Cue(
                "line", cue.start_ms, end, cue.text, label=cue.label, interrupted=True
            )
    return list(cues.values())


def call_cues(
    call: Call, conversation: Iterable[Utterance], events: Iterable[CallEvent]
) -> list[Cue]:
    """Return everything said in the call, by either side, in time order."""
    cues = caller_cues(call, conversation) + line_cues(events)
    return sorted(cues, key=lambda c: (c.start_ms, c.side != "line"))


def clock(ms: int, *, vtt: bool = False) -> str:
    """Format `ms` as h:mm:ss.mmm (WebVTT wants two-digit hours) or m:ss.s."""
    seconds, millis = divmod(max(0, ms), 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if vtt:
        return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"
    return f"{hours * 60 + minutes}:{secs:02d}.{millis // 100}"


def _vtt_text(text: str) -> str:
    # A cue's text must not hold "-->" or a blank line; & and < are HTML-escaped in WebVTT.
    text = " ".join(text.split()).replace("-->", "→")
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webvtt(cues: Sequence[Cue]) -> str:
    """Return captions for the recording: one cue per utterance and prompt, with its speaker."""
    lines = ["WEBVTT", ""]
    for n, cue in enumerate(cues, 1):
        lines += [
            f"{cue.side}-{n}",
            f"{clock(cue.start_ms, vtt=True)} --> {clock(cue.end_ms, vtt=True)}",
            f"<v {cue.side}>{_vtt_text(cue.text)}",
            "",
        ]
    return "\n".join(lines)


def transcript_text(call: Call, cues: Sequence[Cue]) -> str:
    """Return the call as plain text: a header, then one line per cue."""
    head = [
        f"Call {call.call_sid}",
        f"From {call.from_number or '-'} to {call.to_number or '-'}",
        f"Started {call.started_at.isoformat() if call.started_at else '-'}",
        "",
    ]
    body = [
        f"[{clock(c.start_ms)}] {c.side}: {c.text}"
        + ("" if c.final else " (no FINAL)")
        + (" (interrupted)" if c.interrupted else "")
        for c in cues
    ]
    return "\n".join(head + body) + "\n"


def transcript_json(call: Call, cues: Sequence[Cue]) -> dict[str, Any]:
    """Return the call and its cues as JSON-ready data."""
    return {
        "call_sid": call.call_sid,
        "stream_sid": call.stream_sid,
        "from": call.from_number,
        "to": call.to_number,
        "language": call.stt_language,
        "started_at": call.started_at.isoformat() if call.started_at else None,
        "ended_at": call.ended_at.isoformat() if call.ended_at else None,
        "cues": [asdict(c) for c in cues],
    }
