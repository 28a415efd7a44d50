"""What simulated calls saw: one call's `CallReport`, and lines that sum up many."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# Close codes that end a call cleanly; 1005 is "no status" (a bare close frame).
CLEAN_CLOSE_CODES = frozenset({1000, 1001, 1005})


class CallError(Exception):
    """The call could not be placed or ended abnormally."""


@dataclass
class CallReport:
    """What one simulated call saw; filled in live and final when `dial` returns."""

    call_sid: str
    stream_sid: str
    stream_url: str = ""
    http_status: int | None = None
    frames_sent: int = 0
    dtmf_sent: int = 0
    frames_received: int = 0
    frames_played: int = 0
    frames_cleared: int = 0
    jitter_p50_ms: float = 0.0
    jitter_p99_ms: float = 0.0
    jitter_max_ms: float = 0.0
    marks_received: int = 0
    marks_echoed: int = 0
    echoed_marks: list[str] = field(default_factory=list)
    clears_received: int = 0
    # time.perf_counter() of each clear received (CLOCK_MONOTONIC: comparable across processes)
    clear_at: list[float] = field(default_factory=list)
    bad_messages: int = 0  # binary frames, bad JSON, wrong streamSid, unknown events
    first_media_ms: float | None = None  # from `start` sent to the first media received
    send_late_max_ms: float = 0.0  # worst lateness of our own sends: is the client keeping up?
    duration_s: float = 0.0
    close_code: int | None = None
    close_reason: str = ""
    closed_by: str = ""  # "server" or "caller"
    error: str | None = None
    # stream status callback answers by event: an HTTP status, or why the POST failed
    status_callbacks: dict[str, int | str] = field(default_factory=dict)
    received_audio: bytes = field(default=b"", repr=False)

    @property
    def ok(self) -> bool:
        """Whether the call connected, streamed and closed cleanly."""
        return self.error is None and self.close_code in CLEAN_CLOSE_CODES

    def raise_for_error(self) -> None:
        """Raise `CallError` if the call failed."""
        if not self.ok:
            raise CallError(self.error or f"WebSocket closed with code {self.close_code}")

    def summary(self) -> str:
        """Describe the call in one line."""
        status = "ok" if self.ok else f"FAILED ({self.error or f'close {self.close_code}'})"
        first = "-" if self.first_media_ms is None else f"{self.first_media_ms:.0f}"
        return (
            f"{self.call_sid} {status} sent={self.frames_sent} recv={self.frames_received} "
            f"played={self.frames_played} jitter_ms p50/p99/max="
            f"{self.jitter_p50_ms:.1f}/{self.jitter_p99_ms:.1f}/{self.jitter_max_ms:.1f} "
            f"marks={self.marks_echoed}/{self.marks_received} clears={self.clears_received} "
            f"first_audio_ms={first} close={self.close_code}({self.closed_by}) "
            f"dur={self.duration_s:.1f}s"
        )


# Called with the live report once the stream is up, then about once a second.
ProgressCallback = Callable[[CallReport], None]


def calls_summary(reports: Sequence[CallReport]) -> str:
    """Describe all calls together: failures, totals and the worst figures."""
    failed = sum(not r.ok for r in reports)
    firsts = [r.first_media_ms for r in reports if r.first_media_ms is not None]
    first = f"{max(firsts):.0f}" if firsts else "-"
    return (
        f"calls={len(reports)} ok={len(reports) - failed} failed={failed} "
        f"sent={sum(r.frames_sent for r in reports)} "
        f"recv={sum(r.frames_received for r in reports)} "
        f"jitter_ms p50/p99/max(worst call)="
        f"{max((r.jitter_p50_ms for r in reports), default=0):.1f}/"
        f"{max((r.jitter_p99_ms for r in reports), default=0):.1f}/"
        f"{max((r.jitter_max_ms for r in reports), default=0):.1f} "
        f"marks={sum(r.marks_echoed for r in reports)}/{sum(r.marks_received for r in reports)} "
        f"first_audio_ms(worst)={first} "
        f"send_late_max_ms={max((r.send_late_max_ms for r in reports), default=0):.1f}"
    )


def progress_line(seconds: int, reports: Sequence[CallReport], calls: int) -> str:
    """Describe the calls in progress `seconds` into a run of `calls`: totals so far."""
    return (
        f"[{seconds:>3}s] calls={len(reports)}/{calls} "
        f"sent={sum(r.frames_sent for r in reports)} "
        f"recv={sum(r.frames_received for r in reports)} "
        f"played={sum(r.frames_played for r in reports)} "
        f"marks={sum(r.marks_echoed for r in reports)}/"
        f"{sum(r.marks_received for r in reports)} "
        f"clears={sum(r.clears_received for r in reports)}"
    )
