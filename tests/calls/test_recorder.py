"""The recorder: batching, flushing, shedding, and a database that is slow or gone.

The writer thread has its own database connection, so these tests commit for real
(`transactional_db`, through the `recorder_factory` fixture).
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction

from calls import services
from calls.models import Call, CallEvent, MetricSample, Transcript
from calls.recorder import WRITER_THREAD_NAME, Recorder, get_recorder
from calls.rows import CallAnswer
from telephony.media.cadence import Cadence
from tests.helpers.clock import FakeClock
from tests.helpers.figures import T0, said, sample, wait_for

START = datetime.fromtimestamp(T0, tz=UTC)
MakeRecorder = Callable[..., Recorder]


def start_stream(recorder: Recorder, call_sid: str = "CA1") -> None:
    recorder.stream_started(
        call_sid=call_sid,
        stream_sid="MZ" + call_sid,
        account_sid="AC1",
        stt_engine="whisper",
        stt_language="en",
        started_at=START,
    )


def test_a_whole_call_is_written_and_closed(recorder_factory: MakeRecorder) -> None:
    services.call_answered(CallAnswer(call_sid="CA1", from_number="+972501234567"))
    recorder = recorder_factory()
    start_stream(recorder)
    recorder.greeting_played(call_sid="CA1", at=T0 + 2.5)
    recorder.transcript(said("CA1", "partial", "hello"))
    recorder.transcript(said("CA1", "final", "hello there", latency_ms=380.0))
    recorder.event(call_sid="CA1", kind="dtmf", detail="5", at=T0 + 3)
    recorder.event(call_sid="CA1", kind="mark", detail="greeting", data={"rtt_ms": 81.5}, at=T0 + 4)
    for s in range(8):
        recorder.metric(sample("CA1", s))
    recorder.stream_ended(
        call_sid="CA1",
        reason="stop",
        ended_at=T0 + 8,
        totals={"frames_in": 400, "frames_out": 400, "rx_drops": 0, "tx_drops": 0},
    )
    assert recorder.flush("CA1", timeout=5.0)

    call = Call.objects.get()
    assert call.from_number == "+972501234567"  # the webhook's row, completed by the stream
    assert (call.status, call.stream_sid, call.finals, call.go) == ("ended", "MZCA1", 1, True)
    assert call.greeting_played_at == datetime.fromtimestamp(T0 + 2.5, tz=UTC)
    assert call.process == recorder.process
    assert list(call.transcripts.values_list("kind", "text")) == [
        ("partial", "hello"),
        ("final", "hello there"),
    ]
    assert MetricSample.objects.filter(call=call).count() == 8
    assert list(call.events.values_list("kind", "detail")) == [("dtmf", "5"), ("mark", "greeting")]
    assert CallEvent.objects.get(kind="mark").data == {"rtt_ms": 81.5}
    stats = recorder.stats()
    assert stats.written == {"started": 1, "greeting": 1, "partial": 1, "final": 1,
                             "event": 2, "metric": 8, "ended": 1}  # fmt: skip
    assert stats.shed == {}
    assert stats.lost == {}
    # Rows arrive in batches, not a transaction each.
    assert stats.batches < 15


def test_a_row_with_no_time_is_stamped_when_queued_not_when_written(
    recorder_factory: MakeRecorder,
) -> None:
    queued_at = [START]
    recorder = recorder_factory(wall_clock=lambda: queued_at[0], start=False)
    recorder.call_answered(call_sid="CA1", from_number="+972501234567")
    recorder.event(call_sid="CA1", kind="dtmf", detail="5")
    queued_at[0] = START + timedelta(hours=1)  # the writer runs much later
    recorder.start()
    assert recorder.flush(timeout=5.0)
    call = Call.objects.get()
    assert (call.from_number, call.answered_at) == ("+972501234567", START)
    assert CallEvent.objects.get().at == START
    assert recorder.stats().written == {"answered": 1, "event": 1}


def test_a_stream_with_no_row_yet_is_recorded(recorder_factory: MakeRecorder) -> None:
    recorder = recorder_factory()
    recorder.transcript(said("CA-orphan", "final", "hi"))
    recorder.metric(sample("CA-orphan", 1))
    assert recorder.flush(timeout=5.0)
    call = Call.objects.get(call_sid="CA-orphan")
    assert call.transcripts.count() == 1
    assert call.samples.count() == 1


def test_a_full_queue_sheds_partials_and_samples_oldest_first(
    recorder_factory: MakeRecorder,
) -> None:
    recorder = recorder_factory(maxsize=10, start=False)  # the writer is not running: all waits
    start_stream(recorder)
    for n in range(1, 5):
        recorder.transcript(said("CA1", "partial", f"p{n}"))
    for s in range(1, 4):
        recorder.metric(sample("CA1", s))
    recorder.transcript(said("CA1", "final", "f1"))
    recorder.transcript(said("CA1", "partial", "p5"))
    assert recorder.stats().queued == 10
    assert recorder.stats().shed == {}

    recorder.transcript(said("CA1", "final", "f2", utterance=2))  # sheds p1
    recorder.metric(sample("CA1", 4))  # sheds p2
    recorder.transcript(said("CA1", "revision", "f1 revised"))  # sheds p3
    recorder.event(call_sid="CA1", kind="error", detail="boom", at=T0)  # sheds p4
    recorder.metric(sample("CA1", 5))  # sheds sample 1
    stats = recorder.stats()
    assert stats.queued == 10
    assert stats.shed == {"partial": 4, "metric": 1}
    assert recorder.shed_counts("CA1") == {"partial": 4, "metric": 1}

    recorder.stream_ended(call_sid="CA1", reason="stop", ended_at=T0 + 6, totals={})
    recorder.start()
    assert recorder.flush("CA1", timeout=5.0)

    kept = list(Transcript.objects.order_by("id").values_list("kind", "text"))
    # What was kept is written in the order it was queued.
    assert kept == [("final", "f1"), ("partial", "p5"), ("final", "f2"), ("revision", "f1 revised")]
    assert list(MetricSample.objects.values_list("second", flat=True)) == [3, 4, 5]
    call = Call.objects.get()
    assert call.finals == 2
    assert call.status == "ended"
    assert call.shed == {"partial": 4, "metric": 2}  # the end itself shed sample 2
    assert CallEvent.objects.get().detail == "boom"
    assert recorder.stats().lost == {}


def test_a_queue_full_of_rows_it_must_keep_refuses_and_counts(
    recorder_factory: MakeRecorder,
) -> None:
    recorder = recorder_factory(maxsize=3, start=False)
    for n in range(3):
        recorder.transcript(said("CA1", "final", f"f{n}", utterance=n + 1))
    recorder.transcript(said("CA1", "partial", "too late"))
    recorder.transcript(said("CA1", "final", "lost", utterance=9))
    stats = recorder.stats()
    assert stats.shed == {"partial": 1}
    assert stats.lost == {"final": 1}
    recorder.start()
    assert recorder.flush(timeout=5.0)
    assert list(Transcript.objects.values_list("text", flat=True)) == ["f0", "f1", "f2"]


def test_flush_waits_for_what_was_queued_and_gives_up_at_its_timeout(
    recorder_factory: MakeRecorder,
) -> None:
    gate = threading.Event()
    recorder = recorder_factory(before_write=lambda items: gate.wait(10))
    start_stream(recorder)
    recorder.transcript(said("CA1", "final", "hello"))
    t0 = time.perf_counter()
    assert not recorder.flush("CA1", timeout=0.2)
    assert 0.19 <= time.perf_counter() - t0 < 1.0
    assert recorder.flush("CA-unknown", timeout=0.0)  # nothing queued for it
    gate.set()
    assert recorder.flush("CA1", timeout=5.0)
    assert Transcript.objects.filter(text="hello").exists()


async def test_aflush_does_not_block_the_loop(recorder_factory: MakeRecorder) -> None:
    gate = threading.Event()
    recorder = recorder_factory(before_write=lambda items: gate.wait(10))
    recorder.transcript(said("CA1", "final", "hello"))
    import asyncio

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    flushed = asyncio.create_task(recorder.aflush(timeout=5.0))
    await asyncio.sleep(0.2)
    assert not flushed.done()
    assert ticks >= 10  # the loop kept turning while the flush waited
    gate.set()
    assert await flushed
    task.cancel()


def test_a_row_the_database_refuses_loses_only_itself(recorder_factory: MakeRecorder) -> None:
    recorder = recorder_factory(linger_s=0.2)  # one batch for all four rows
    start_stream(recorder)
    recorder.transcript(said("CA1", "final", "kept"))
    recorder.transcript(said("CA1", "partial", "bad", utterance=-1))  # fails a CHECK constraint
    recorder.metric(sample("CA1", 2))
    assert recorder.flush(timeout=5.0)
    assert Transcript.objects.get().text == "kept"
    assert list(MetricSample.objects.values_list("second", flat=True)) == [2]
    assert Call.objects.get().status == "active"
    assert recorder.stats().lost == {"partial": 1}
    assert recorder.thread is not None
    assert recorder.thread.is_alive()


def test_running_calls_are_seen_with_their_drops(recorder_factory: MakeRecorder) -> None:
    clock = FakeClock(start=0.0)
    recorder = recorder_factory(heartbeat_s=10.0, clock=clock)
    start_stream(recorder)
    assert recorder.flush(timeout=5.0)
    clock.advance(100.0)
    recorder.metric(sample("CA1", 30, rx_drops=2, rx_drops_total=2))
    assert recorder.flush(timeout=5.0)
    call = Call.objects.get()
    assert call.last_seen_at == datetime.fromtimestamp(T0 + 30, tz=UTC)
    assert call.rx_drops == 2
    clock.advance(5.0)  # at 105 s, within the heartbeat: the row is not touched
    recorder.metric(sample("CA1", 35, rx_drops_total=5))
    assert recorder.flush(timeout=5.0)
    assert Call.objects.get().rx_drops == 2
    clock.advance(5.0)
    recorder.metric(sample("CA1", 40, rx_drops_total=6))
    assert recorder.flush(timeout=5.0)
    assert Call.objects.get().rx_drops == 6


def test_there_is_one_recorder_per_process_with_one_named_thread() -> None:
    recorder = get_recorder()
    assert get_recorder() is recorder
    assert recorder.thread is not None
    assert recorder.thread.name == WRITER_THREAD_NAME
    assert recorder.thread.daemon
    writers = [t for t in threading.enumerate() if t.name == WRITER_THREAD_NAME]
    assert recorder.thread in writers


@contextlib.contextmanager
def database_blocked() -> Iterator[None]:
    """Hold a lock that stops the recorder's writes until the block ends."""
    call = Call.objects.create(call_sid="CA-lock")
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # The writer's INSERT waits on the lock: a database that is slow, not down.
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {Transcript._meta.db_table} IN ACCESS EXCLUSIVE MODE")
        else:
            # SQLite allows one writer: the recorder's write fails ("locked") and is retried.
            Transcript.objects.create(call=call, kind="final", text="x", utterance=1,
                                      offset_ms=0, at=START)  # fmt: skip
        yield


def test_a_blocked_database_loses_no_final_and_never_stalls_the_rx_cadence(
    recorder_factory: MakeRecorder,
) -> None:
    recorder = recorder_factory(maxsize=60, retry_max_s=0.1)
    start_stream(recorder)
    assert recorder.flush(timeout=5.0)
    ticks, finals = 100, 0
    call_us: list[float] = []
    lateness_ms: list[float] = []

    def rx_thread() -> None:
        """What an RX thread does each 20 ms, plus handing its rows to the recorder."""
        nonlocal finals
        cadence = Cadence()
        for tick in range(ticks):
            lateness_ms.append(cadence.wait() * 1000)
            t0 = time.perf_counter()
            recorder.transcript(said("CA1", "partial", f"p{tick}", utterance=tick // 10 + 1))
            if tick % 10 == 9:
                recorder.transcript(said("CA1", "final", f"f{tick}", utterance=tick // 10 + 1))
                finals += 1
            if tick % 5 == 0:
                recorder.metric(sample("CA1", tick))
            call_us.append((time.perf_counter() - t0) * 1e6)
            cadence.advance()

    with database_blocked():
        thread = threading.Thread(target=rx_thread, name="rx-CA1-test")
        t0 = time.perf_counter()
        thread.start()
        thread.join(10)
        elapsed = time.perf_counter() - t0
        stats = recorder.stats()
        assert stats.written.get("final", 0) == 0  # the database really was blocked
        assert stats.written.get("partial", 0) == 0

    print(
        f"\nDB blocked ({connection.vendor}): {ticks} ticks in {elapsed:.3f} s; recorder calls "
        f"median {statistics.median(call_us):.1f} us, max {max(call_us):.1f} us; cadence "
        f"lateness median {statistics.median(lateness_ms):.2f} ms, max {max(lateness_ms):.2f} ms; "
        f"retries {stats.retries}; shed {stats.shed}"
    )
    # The cadence held: 100 ticks of 20 ms took 2 s, not a database timeout's worth.
    assert elapsed < ticks * 0.020 + 0.3
    # Microseconds, not milliseconds (a loaded machine wakes a sleeping thread slowly)...
    assert statistics.median(call_us) < 1000
    # ... and never a database wait (the lock is held for the whole 2 s): at worst a GIL
    # hand-over or a garbage collection.
    assert max(call_us) < 250_000
    assert statistics.median(lateness_ms) < 2.0
    # 100 partials + 10 finals + 20 samples into a queue of 60: the partials and samples went.
    assert sum(stats.shed.values()) > 0
    assert set(stats.shed) <= {"partial", "metric"}

    assert recorder.flush(timeout=10.0)
    assert finals == 10
    written = set(Transcript.objects.filter(kind="final").values_list("text", flat=True))
    assert written >= {f"f{t}" for t in range(9, ticks, 10)}
    assert Call.objects.get(call_sid="CA1").finals == finals
    stats = recorder.stats()
    assert stats.lost == {}
    enqueued = stats.enqueued["partial"] + stats.enqueued["metric"]
    assert stats.written["partial"] + stats.written["metric"] == enqueued - sum(stats.shed.values())


@pytest.mark.parametrize("down_for_s", [0.5])
def test_callers_never_wait_while_the_writer_retries(
    recorder_factory: MakeRecorder, down_for_s: float
) -> None:
    attempts = 0

    def database_down(items: object) -> None:
        nonlocal attempts
        attempts += 1
        if time.monotonic() < until:
            from django.db import OperationalError

            raise OperationalError("connection refused (test)")

    until = time.monotonic() + down_for_s
    recorder = recorder_factory(before_write=database_down, retry_max_s=0.05)
    durations = []
    for n in range(2000):
        t0 = time.perf_counter()
        recorder.transcript(said("CA1", "final" if n % 100 == 0 else "partial", f"t{n}"))
        durations.append(time.perf_counter() - t0)
    us = sorted(d * 1e6 for d in durations)
    print(f"\nrecorder calls while the database is down: median {us[1000]:.1f} us, "
          f"p99 {us[1980]:.1f} us, max {us[-1]:.1f} us")  # fmt: skip
    assert us[1000] < 100
    assert us[1980] < 1000
    # Never a database wait (the outage lasts 500 ms): at worst a GIL hand-over or a collection.
    assert us[-1] < 250_000
    assert wait_for(lambda: attempts >= 3, timeout=5.0)
    assert recorder.flush(timeout=10.0)
    assert Transcript.objects.filter(kind="final").count() == 20
    assert Transcript.objects.count() == 2000
    assert recorder.stats().retries >= 2
