"""The reads: a call's conversation, the live page's snapshot, the GO/NO-GO check's figures."""

from __future__ import annotations

from datetime import timedelta

import pytest

from calls import selectors, services
from calls.rows import StreamEnd
from tests.helpers.calls import START, started
from tests.helpers.figures import T0, said, sample

pytestmark = pytest.mark.django_db


def test_the_conversation_folds_partials_into_their_utterance() -> None:
    call = started()
    services.transcripts_create(
        events=[
            said("CA1", "partial", "book", utterance=1),
            said("CA1", "partial", "book a", utterance=1, at=T0 + 1.6),
            said("CA1", "final", "book a table", utterance=1, at=T0 + 1.9),
            said("CA1", "partial", "for", utterance=2, offset_ms=4000),
            said("CA1", "final", "for two", utterance=2, local=True, offset_ms=4000),
            said("CA1", "revision", "for two people", utterance=2, offset_ms=4000),
            said("CA1", "partial", "and", utterance=3, offset_ms=7000),
        ],
        call_ids={"CA1": call.pk},
    )
    first, second, third = selectors.call_conversation(call=call)
    assert [p.text for p in first.partials] == ["book", "book a"]
    assert first.text == "book a table"
    assert first.revision is None
    assert second.text == "for two people"
    assert second.final is not None
    assert second.final.local
    assert third.final is None
    assert third.text == "and"


def test_the_live_snapshot_holds_running_calls_and_their_last_minute() -> None:
    now = START + timedelta(seconds=100)
    running = started("CA-run")
    services.call_seen(call_id=running.pk, at=now, rx_drops=0, tx_drops=0)
    started("CA-stale")  # last seen at START: 100 s ago, but not yet stale (120 s)
    started("CA-gone", started_at=START - timedelta(minutes=5))
    started("CA-done")
    services.call_ended(StreamEnd(call_sid="CA-done", reason="stop", ended_at=now, totals={}))
    services.metric_samples_create(
        samples=[sample("CA-run", s) for s in range(100)], call_ids={"CA-run": running.pk}
    )
    snapshot = selectors.calls_live_snapshot(now=now, history_s=60)
    assert [c["call_sid"] for c in snapshot] == ["CA-run", "CA-stale"]
    seconds = [s["second"] for s in snapshot[0]["samples"]]
    assert seconds == list(range(40, 100))
    assert snapshot[0]["samples"][-1]["fps_in"] == 50
    assert snapshot[0]["started_at"] == pytest.approx(T0)


def test_a_stored_second_reads_back_as_the_second_that_was_written() -> None:
    call = started()
    written = [
        sample("CA1", 1, mark_rtt_ms=80.5),
        sample("CA1", 2, fps_in=47, rx_drops=3, rx_drops_total=3, write_ms=0.75, send_q=4),
    ]
    services.metric_samples_create(samples=written, call_ids={"CA1": call.pk})
    read, last = selectors.seconds_recorded_after(call_sids=["CA1"], after_id=0)
    assert read == written
    assert selectors.seconds_recorded_after(call_sids=["CA1"], after_id=last) == ([], last)


def test_a_stored_transcript_reads_back_as_the_event_that_was_published() -> None:
    call = started()
    written = [
        said("CA1", "partial", "hel"),
        said("CA1", "final", "hello", latency_ms=412.5, local=True),
    ]
    services.transcripts_create(events=written, call_ids={"CA1": call.pk})
    read, last = selectors.transcripts_recorded_after(call_sids=["CA1"], after_id=0)
    assert read == written
    services.transcripts_create(
        events=[said("CA1", "revision", "hello there")], call_ids={"CA1": call.pk}
    )
    newer, _ = selectors.transcripts_recorded_after(call_sids=["CA1"], after_id=last)
    assert [e.text for e in newer] == ["hello there"]


def test_the_check_reads_only_its_own_calls() -> None:
    ours, other = started("CA-ours"), started("CA-other")
    for call in (ours, other):
        services.metric_samples_create(
            samples=[sample(call.call_sid, 1)], call_ids={call.call_sid: call.pk}
        )
    seconds, _ = selectors.seconds_recorded_after(call_sids=["CA-ours", "CA-none"], after_id=0)
    assert [s.call_sid for s in seconds] == ["CA-ours"]
    assert set(selectors.calls_by_sid(call_sids=["CA-ours", "CA-none"])) == {"CA-ours"}
