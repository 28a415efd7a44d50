"""A call that has ended stays ended, whatever the recorder is handed after its end."""

from __future__ import annotations

from datetime import timedelta

import pytest

from calls import selectors, services
from calls.models import Call, CallEvent
from calls.rows import CallAnswer, StreamEnd
from tests.helpers.calls import START, started

pytestmark = pytest.mark.django_db

TOTALS = {"frames_in": 500, "frames_out": 510, "rx_drops": 0, "tx_drops": 0}


def ended_call() -> Call:
    started("CA1", stream_sid="MZ1")
    services.call_ended(
        StreamEnd(
            call_sid="CA1",
            reason="stop",
            ended_at=START + timedelta(seconds=10),
            totals=TOTALS,
            stream_sid="MZ1",
        )
    )
    return Call.objects.get(call_sid="CA1")


def test_a_stream_after_the_end_never_reopens_the_call() -> None:
    """Found by review: a replayed stream moved an ended call back to active and reset it."""
    before = ended_call()
    started("CA1", stream_sid="MZ2", started_at=START + timedelta(seconds=30))
    services.call_ended(
        StreamEnd(
            call_sid="CA1",
            reason="disconnect",
            ended_at=START + timedelta(seconds=40),
            totals={"frames_in": 3, "frames_out": 1},
            stream_sid="MZ2",
        )
    )
    after = Call.objects.get(call_sid="CA1")
    kept = ("status", "stream_sid", "started_at", "ended_at", "end_reason", "frames_in",
            "frames_out", "go", "go_reasons")  # fmt: skip
    assert {f: getattr(after, f) for f in kept} == {f: getattr(before, f) for f in kept}
    assert after.status == "ended"
    refused = CallEvent.objects.get(call=after, kind="refused")
    assert refused.detail == "stream MZ2 after the call ended"


def test_a_replayed_answer_leaves_an_ended_call_as_it_was() -> None:
    before = ended_call()
    replayed = services.call_answered(
        CallAnswer(call_sid="CA1", from_number="+15550000000", to_number="+15550000001")
    )
    assert replayed.status == "ended"
    after = Call.objects.get(call_sid="CA1")
    assert (after.from_number, after.answered_at) == (before.from_number, before.answered_at)


def test_the_calls_that_ended_are_known() -> None:
    ended_call()
    started("CA2", stream_sid="MZ3")
    assert selectors.call_known(call_sid="CA2")
    assert not selectors.call_known(call_sid="CA3")
    assert selectors.calls_ended_since(since=START) == ["CA1"]
    assert selectors.calls_ended_since(since=START + timedelta(seconds=11)) == []
