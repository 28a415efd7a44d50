"""A batch of rows written in one transaction: the order of the writes, call ids, the heartbeat."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from calls import services
from calls.batch import BatchWriter, Writes
from calls.models import Call, CallEvent, MetricSample, Transcript
from calls.rows import CallAnswer, EventData, GreetingPlayed, StreamEnd, StreamStart
from tests.helpers.calls import START
from tests.helpers.clock import FakeClock
from tests.helpers.figures import T0, said, sample

NO_SHEDS: dict[str, int] = {}


def no_sheds(call_sid: str) -> dict[str, int]:
    return NO_SHEDS


def test_a_batch_is_sorted_into_its_writes_keeping_each_ones_order() -> None:
    end = StreamEnd(call_sid="CA1", reason="stop", ended_at=T0, totals={})
    start = StreamStart(call_sid="CA1", stream_sid="MZ1", started_at=T0)
    partial, final = said("CA1", "partial", "hel"), said("CA1", "final", "hello")
    first, second = sample("CA1", 2), sample("CA1", 1)
    event = EventData(call_sid="CA2", kind="dtmf", detail="1")
    greeting = GreetingPlayed(call_sid="CA1", at=T0)
    answer = CallAnswer(call_sid="CA1")
    writes = Writes.of([end, partial, first, start, event, final, greeting, second, answer])
    assert writes == Writes(
        answered=[answer],
        started=[start],
        transcripts=[partial, final],
        samples=[first, second],
        events=[event],
        greetings=[greeting],
        ended=[end],
    )
    assert writes.bulk_call_sids() == {"CA1", "CA2"}


def test_anything_else_is_not_a_row() -> None:
    with pytest.raises(TypeError, match="not a row"):
        Writes.of([{"call_sid": "CA1"}])  # type: ignore[list-item]


@pytest.mark.django_db
def test_a_whole_call_in_one_batch_is_judged_from_the_samples_written_with_it() -> None:
    writer = BatchWriter(process="host:1")
    writer.write(
        [
            StreamEnd(call_sid="CA1", reason="stop", ended_at=T0 + 8, totals={"rx_drops": 0}),
            *[sample("CA1", s) for s in range(8)],
            said("CA1", "final", "hello"),
            GreetingPlayed(call_sid="CA1", at=T0 + 1),
            EventData(call_sid="CA1", kind="dtmf", detail="5", at=T0 + 2),
            StreamStart(call_sid="CA1", stream_sid="MZ1", started_at=T0),
            CallAnswer(call_sid="CA1", from_number="+972501234567", at=START),
        ],
        shed_of=lambda call_sid: {"partial": 2},
    )
    call = Call.objects.get()
    assert (call.status, call.go, call.finals, call.process) == ("ended", True, 1, "host:1")
    assert (call.from_number, call.stream_sid, call.shed) == (
        "+972501234567",
        "MZ1",
        {"partial": 2},
    )
    assert call.greeting_played_at == START + timedelta(seconds=1)
    assert MetricSample.objects.count() == 8
    assert CallEvent.objects.get().at == START + timedelta(seconds=2)


@pytest.mark.django_db
def test_a_running_calls_id_is_remembered_between_batches_and_forgotten_at_its_end() -> None:
    writer = BatchWriter(process="host:1")
    writer.write([StreamStart(call_sid="CA1", stream_sid="MZ1", started_at=T0)], shed_of=no_sheds)
    Call.objects.filter(call_sid="CA1").update(call_sid="CA1-renamed")  # the id is what counts
    writer.write([said("CA1", "final", "hello")], shed_of=no_sheds)
    assert Transcript.objects.get().call.call_sid == "CA1-renamed"
    writer.write(
        [StreamEnd(call_sid="CA1", reason="stop", ended_at=T0, totals={})], shed_of=no_sheds
    )
    writer.write([said("CA1", "partial", "late")], shed_of=no_sheds)
    # Ended and forgotten: a late row finds (or makes) the row by its CallSid again.
    late = Transcript.objects.get(text="late")
    assert late.call.call_sid == "CA1"


@pytest.mark.django_db
def test_a_failed_batch_leaves_no_id_behind() -> None:
    writer = BatchWriter(process="host:1")
    with pytest.raises(KeyError):  # the end asks for sheds it cannot find: the batch fails
        writer.write(
            [
                StreamStart(call_sid="CA1", stream_sid="MZ1", started_at=T0),
                StreamEnd(call_sid="CA1", reason="stop", ended_at=T0, totals={}),
            ],
            shed_of=lambda call_sid: {}[call_sid],
        )
    assert not Call.objects.exists()  # rolled back ...
    writer.write([said("CA1", "final", "hi")], shed_of=no_sheds)
    assert Transcript.objects.get().call.call_sid == "CA1"  # ... and its id was not kept


@pytest.mark.django_db
def test_running_calls_are_noted_alive_at_most_once_per_heartbeat() -> None:
    clock = FakeClock(start=0.0)
    writer = BatchWriter(process="host:1", heartbeat_s=10.0, clock=clock)
    writer.write([StreamStart(call_sid="CA1", stream_sid="MZ1", started_at=T0)], shed_of=no_sheds)
    clock.advance(100.0)
    writer.write(
        [sample("CA1", 30, rx_drops_total=2), sample("CA1", 29, rx_drops_total=1)],
        shed_of=no_sheds,
    )
    call = Call.objects.get()
    # The latest second of the batch counts, whatever order it came in.
    assert call.last_seen_at == datetime.fromtimestamp(T0 + 30, tz=UTC)
    assert call.rx_drops == 2
    clock.advance(5.0)
    writer.write([sample("CA1", 35, rx_drops_total=5)], shed_of=no_sheds)
    assert Call.objects.get().rx_drops == 2
    clock.advance(5.0)
    writer.write([sample("CA1", 40, rx_drops_total=6, tx_drops_total=1)], shed_of=no_sheds)
    call = Call.objects.get()
    assert (call.rx_drops, call.tx_drops) == (6, 1)


@pytest.mark.django_db
def test_a_call_never_started_is_recorded_with_a_bare_row() -> None:
    writer = BatchWriter(process="host:1", wall_clock=lambda: START)
    writer.write([sample("CA-orphan", 1), said("CA-orphan", "final", "hi")], shed_of=no_sheds)
    call = Call.objects.get()
    assert (call.call_sid, call.status, call.created_at) == ("CA-orphan", "active", START)
    assert services.call_ids_ensure(call_sids=["CA-orphan"], at=START) == {"CA-orphan": call.pk}
