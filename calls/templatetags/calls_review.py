"""Template filters for the call review page."""

from datetime import datetime

from django import template

register = template.Library()


@register.filter
def clock_ms(ms: float | None) -> str:
    """Format milliseconds into the call as m:ss.s."""
    if ms is None:
        return ""
    tenths = int(ms) // 100
    minutes, tenths = divmod(tenths, 600)
    return f"{minutes}:{tenths // 10:02d}.{tenths % 10}"


@register.filter
def since(at: datetime | None, start: datetime | None) -> str:
    """Format a moment as m:ss.s after the stream started."""
    if at is None or start is None:
        return ""
    return clock_ms(max(0.0, (at - start).total_seconds() * 1000))
