"""The rows a call reports: their kinds, and rows that do not change after they are handed over."""

from __future__ import annotations

import dataclasses

import pytest

from calls.rows import (
    CallAnswer,
    EventData,
    GreetingPlayed,
    StreamEnd,
    StreamStart,
    kind_of,
)
from tests.helpers.figures import T0, said, sample


def test_each_row_is_counted_by_its_kind() -> None:
    rows = [
        CallAnswer(call_sid="CA1"),
        StreamStart(call_sid="CA1", stream_sid="MZ1", started_at=T0),
        said("CA1", "partial", "hel"),
        said("CA1", "final", "hello"),
        said("CA1", "revision", "hello there"),
        sample("CA1", 1),
        EventData(call_sid="CA1", kind="dtmf", detail="5"),
        GreetingPlayed(call_sid="CA1", at=T0),
        StreamEnd(call_sid="CA1", reason="stop", ended_at=T0, totals={}),
    ]
    assert [kind_of(row) for row in rows] == [
        "answered", "started", "partial", "final", "revision", "metric", "event", "greeting",
        "ended",
    ]  # fmt: skip


def test_a_row_keeps_what_it_was_given_when_the_reporter_reuses_its_dicts() -> None:
    data = {"rtt_ms": 80}
    totals = {"frames_in": 400}
    event = EventData(call_sid="CA1", kind="mark", data=data)
    end = StreamEnd(call_sid="CA1", reason="stop", ended_at=T0, totals=totals)
    data["rtt_ms"] = 1
    totals["frames_in"] = 1
    assert event.data == {"rtt_ms": 80}
    assert end.totals == {"frames_in": 400}
    assert EventData(call_sid="CA1", kind="clear").data == {}


def test_rows_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        CallAnswer(call_sid="CA1").call_sid = "CA2"  # type: ignore[misc]
