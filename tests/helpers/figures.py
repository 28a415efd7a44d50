"""Made-up call data: seconds of figures, transcript events, and a poll until something holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from telephony.metrics.meters import SecondSample
from telephony.turns.transcript import TranscriptEvent

T0 = 1_800_000_000.0  # a fixed wall-clock origin for made-up events (2027-01-15)


def sample(call_sid: str, second: int, **figures: Any) -> SecondSample:
    """Return one second of a healthy call, with `figures` overridden."""
    values: dict[str, Any] = {
        "fps_in": 50,
        "rx_q": 2,
        "rx_drops": 0,
        "rx_drops_total": 0,
        "write_ms": 0.2,
        "tx_fps": 50,
        "tx_q": 3,
        "tx_drops": 0,
        "tx_drops_total": 0,
        "send_q": 1,
        "mark_rtt_ms": None,
    }
    values.update(figures)
    return SecondSample(call_sid=call_sid, second=second, at=T0 + second, **values)


def said(call_sid: str, kind: str, text: str, utterance: int = 1, **more: Any) -> TranscriptEvent:
    """Return a transcript event of `kind` for utterance `utterance`."""
    return TranscriptEvent(
        call_sid=call_sid,
        kind=kind,  # type: ignore[arg-type]
        text=text,
        utterance=utterance,
        offset_ms=more.pop("offset_ms", 1000 * utterance),
        at=more.pop("at", T0 + utterance + 0.5),
        **more,
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll until `predicate()` is true; return whether it became true in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
