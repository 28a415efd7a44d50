"""Live per-call figures: what the call sessions publish to the admin's live page.

The sessions call these from their consumer's event loop; the messages go through the channel
layer to every open live page, in this process or (with Redis) any other. Publishing is best
effort: a slow or absent channel layer must never hold up or break a call.
"""

import asyncio
import logging
import time
from datetime import datetime
from typing import Any

from channels.layers import BaseChannelLayer

from telephony.metrics.meters import FIGURES, SecondSample

log = logging.getLogger(__name__)

METRICS_GROUP = "call_metrics"
PUBLISH_TIMEOUT_S = 0.5  # a group_send slower than this is given up (Redis in trouble)

# What a sample carries, on the wire and in the page: its second and the `[RX]`/`[TX]` figures.
SAMPLE_FIELDS = ("second", *FIGURES)
# The live page's column headers where a figure's name alone would not do.
COLUMN_LABELS = {
    "fps_in": "RX fps_in",
    "rx_q": "RX q",
    "rx_drops": "RX drops",
    "rx_drops_total": "RX drops total",
    "tx_fps": "TX fps",
    "tx_q": "TX q",
    "tx_drops": "TX drops",
    "tx_drops_total": "TX drops total",
    "send_q": "send q",
    "mark_rtt_ms": "mark rtt",
}

_last_failure_log = 0.0


def columns() -> list[tuple[str, str]]:
    """Return the live page's figure columns: (figure, header), in the figures' order."""
    return [(name, COLUMN_LABELS.get(name, name)) for name in FIGURES]


def epoch(at: datetime | float) -> float:
    """Return seconds since the epoch, as the page's JavaScript takes them."""
    return at.timestamp() if isinstance(at, datetime) else float(at)


def sample_message(sample: Any, *, call_sid: str, at: datetime | float) -> dict[str, Any]:
    """Return one sample as the page receives it (from a SecondSample or a MetricSample)."""
    return {
        "call_sid": call_sid,
        "at": epoch(at),
        **{name: getattr(sample, name) for name in SAMPLE_FIELDS},
    }


async def _send(layer: BaseChannelLayer | None, message: dict[str, Any]) -> bool:
    global _last_failure_log
    if layer is None:
        return False
    try:
        async with asyncio.timeout(PUBLISH_TIMEOUT_S):
            await layer.group_send(METRICS_GROUP, message)
        return True
    except Exception as exc:  # a live page is never worth a call: log (at most every 10 s), go on
        now = time.monotonic()
        if now - _last_failure_log > 10:
            _last_failure_log = now
            log.warning("live metrics not published (%s: %s)", type(exc).__name__, exc)
        return False


async def publish_started(
    layer: BaseChannelLayer | None, *, call_sid: str, stream_sid: str, at: datetime | float
) -> bool:
    """Tell the live pages a call's stream started."""
    return await _send(
        layer,
        {
            "type": "metrics.started",
            "call_sid": call_sid,
            "stream_sid": stream_sid,
            "at": epoch(at),
        },
    )


async def publish_sample(layer: BaseChannelLayer | None, sample: SecondSample) -> bool:
    """Send one second's figures of one call to the live pages."""
    return await _send(
        layer,
        {
            "type": "metrics.sample",
            **sample_message(sample, call_sid=sample.call_sid, at=sample.at),
        },
    )


async def publish_said(
    layer: BaseChannelLayer | None, *, call_sid: str, side: str, text: str, at: datetime | float
) -> bool:
    """Tell the live pages what was last said in a call: a caller's FINAL, a line's prompt."""
    return await _send(
        layer,
        {"type": "metrics.said", "call_sid": call_sid, "side": side, "text": text, "at": epoch(at)},
    )


async def publish_ended(
    layer: BaseChannelLayer | None, *, call_sid: str, reason: str, at: datetime | float
) -> bool:
    """Tell the live pages a call ended."""
    return await _send(
        layer, {"type": "metrics.ended", "call_sid": call_sid, "reason": reason, "at": epoch(at)}
    )
