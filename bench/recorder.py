"""Can the recorder keep up with many concurrent calls? Rows written per second vs produced.

    python bench/recorder.py                      # SQLite, then PostgreSQL if it answers
    python bench/recorder.py --db sqlite --calls 100 --seconds 20
    python bench/recorder.py --db postgres --pg-url postgres://postgres@127.0.0.1:5432/postgres

Each simulated call publishes what the call path does: partials (3/s), one metric sample per
second, a FINAL every 4 s, a few events, with its start and end. A producer thread plays all
calls in real time; the recorder writes them to a fresh database (a temporary SQLite file, or a
PostgreSQL database created and dropped for the run). Then a drain run measures the writer's
ceiling: a queue filled up front, written as fast as the database takes it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PG_DEFAULT = "postgres://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "bench_recorder"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--pg-url", default=PG_DEFAULT, help="a PostgreSQL server to create on")
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--partials-per-s", type=float, default=3.0)
    parser.add_argument("--final-every-s", type=float, default=4.0)
    parser.add_argument("--drain-rows", type=int, default=40_000)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.db != "both":
        run_one(args)
        return
    # One process per database: Django is configured once per process.
    for db in ("sqlite", "postgres"):
        argv = [a for a in sys.argv[1:] if not a.startswith("--db")]
        subprocess.run([sys.executable, __file__, "--db", db, *argv], check=False)


def prepare_database(args: argparse.Namespace, workdir: str) -> str:
    """Return the DATABASE_URL of a fresh, empty database for this run."""
    if args.db == "sqlite":
        return f"sqlite:///{workdir}/bench.sqlite3"
    import psycopg

    with psycopg.connect(args.pg_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    return args.pg_url.rsplit("/", 1)[0] + "/" + BENCH_DB


def drop_database(args: argparse.Namespace) -> None:
    if args.db == "postgres":
        import psycopg

        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


def run_one(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-recorder-") as workdir:
        try:
            url = prepare_database(args, workdir)
        except Exception as exc:  # no server: say so and go on with the other database
            print(f"[{args.db}] skipped: {exc}")
            return
        os.environ["DATABASE_URL"] = url
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
        os.environ.setdefault("LOG_LEVEL", "ERROR")
        sys.path.insert(0, str(REPO_ROOT))
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        try:
            live_run(args)
            drain_run(args)
        finally:
            from django.db import connections

            connections.close_all()
            drop_database(args)


def live_run(args: argparse.Namespace) -> None:
    """Play `calls` concurrent calls in real time and see whether the writes keep up."""
    from django.conf import settings
    from django.utils import timezone

    from calls.models import Call, MetricSample, Transcript
    from calls.recorder import Recorder
    from telephony.metrics.meters import SecondSample
    from telephony.turns.transcript import TranscriptEvent

    recorder = Recorder(
        maxsize=settings.RECORDER_QUEUE_SIZE,
        batch_size=settings.RECORDER_BATCH_SIZE,
        linger_s=settings.RECORDER_LINGER_MS / 1000,
    )
    sids = [f"CA{n:032d}" for n in range(args.calls)]
    call_us: list[float] = []
    depth: list[int] = []
    stop = threading.Event()

    def timed(fn, *a, **kw) -> None:
        t0 = time.perf_counter()
        fn(*a, **kw)
        call_us.append((time.perf_counter() - t0) * 1e6)

    def produce() -> None:
        t_start = time.time()
        for sid in sids:
            timed(recorder.stream_started, call_sid=sid, stream_sid="MZ" + sid[2:],
                  stt_engine="whisper", stt_language="en", started_at=timezone.now())  # fmt: skip
        partial_period = 1.0 / args.partials_per_s
        # Stagger the calls across the period, as real calls would be.
        next_partial = [t_start + partial_period * n / args.calls for n in range(args.calls)]
        next_second = [t_start + 1.0 + n / args.calls for n in range(args.calls)]
        seconds = [0] * args.calls
        words = [0] * args.calls
        while not stop.is_set():
            now = time.time()
            for n, sid in enumerate(sids):
                if now >= next_partial[n]:
                    next_partial[n] += partial_period
                    words[n] += 1
                    utterance = 1 + int((now - t_start) // args.final_every_s)
                    offset_ms = int((now - t_start) * 1000)
                    timed(recorder.transcript, TranscriptEvent(
                        call_sid=sid, kind="partial", text=f"word {words[n]} of the caller",
                        utterance=utterance, offset_ms=offset_ms, at=now))  # fmt: skip
                if now >= next_second[n]:
                    next_second[n] += 1.0
                    seconds[n] += 1
                    s = seconds[n]
                    timed(recorder.metric, SecondSample(
                        call_sid=sid, second=s, at=now, fps_in=50, rx_q=2, rx_drops=0,
                        rx_drops_total=0, write_ms=0.3, tx_fps=50, tx_q=3, tx_drops=0,
                        tx_drops_total=0, send_q=1))  # fmt: skip
                    if s % int(args.final_every_s) == 0:
                        timed(recorder.transcript, TranscriptEvent(
                            call_sid=sid, kind="final", text=f"sentence {s} said by the caller",
                            utterance=s // int(args.final_every_s), offset_ms=s * 1000, at=now,
                            latency_ms=350.0))  # fmt: skip
                        timed(recorder.event, call_sid=sid, kind="mark", detail=f"m{s}")
            time.sleep(0.01)

    producer = threading.Thread(target=produce, name="bench-producer")
    t0 = time.perf_counter()
    producer.start()
    while time.perf_counter() - t0 < args.seconds:
        time.sleep(0.5)
        depth.append(recorder.stats().queued)
    stop.set()
    producer.join()
    produced_elapsed = time.perf_counter() - t0
    for sid in sids:
        recorder.stream_ended(call_sid=sid, reason="stop", ended_at=timezone.now(), totals={})
    t_flush = time.perf_counter()
    flushed = recorder.flush(timeout=120.0)
    flush_s = time.perf_counter() - t_flush
    total_s = time.perf_counter() - t0
    stats = recorder.stats()
    recorder.stop()

    produced = sum(stats.enqueued.values())
    written = sum(stats.written.values())
    rows = Transcript.objects.count() + MetricSample.objects.count()
    batches = max(1, stats.batches)
    us = sorted(call_us)
    print(
        f"[{args.db}] live: {args.calls} calls x {args.seconds:.0f} s "
        f"({args.partials_per_s:g} partials/s, 1 sample/s, a FINAL every {args.final_every_s:g} s)"
    )
    print(
        f"[{args.db}]   produced {produced} rows = {produced / produced_elapsed:.0f} rows/s; "
        f"written {written} = {written / total_s:.0f} rows/s over the run incl. the final flush "
        f"({flush_s * 1000:.0f} ms, {'ok' if flushed else 'TIMED OUT'})"
    )
    print(
        f"[{args.db}]   queue depth median {statistics.median(depth):.0f}, max {stats.max_queued}; "
        f"batches {stats.batches} (mean {written / batches:.0f} rows); shed {stats.shed or 0}; "
        f"lost {stats.lost or 0}; retries {stats.retries}"
    )
    print(
        f"[{args.db}]   recorder calls: median {us[len(us) // 2]:.1f} us, "
        f"p99 {us[int(len(us) * 0.99)]:.1f} us, max {us[-1]:.0f} us ({len(us)} calls); "
        f"rows in the tables {rows}, calls ended {Call.objects.filter(status='ended').count()}"
    )


def drain_run(args: argparse.Namespace) -> None:
    """Fill the queue first, then time the writer emptying it: its ceiling in rows/s."""
    from calls.recorder import Recorder
    from telephony.metrics.meters import SecondSample
    from telephony.turns.transcript import TranscriptEvent

    recorder = Recorder(maxsize=args.drain_rows + 10, batch_size=500, linger_s=0.0, start=False)
    now = time.time()
    for n in range(args.drain_rows):
        sid = f"CD{n % args.calls:032d}"
        if n % 4:
            recorder.transcript(TranscriptEvent(call_sid=sid, kind="partial", text="some words",
                                                utterance=1, offset_ms=0, at=now))  # fmt: skip
        else:
            recorder.metric(SecondSample(call_sid=sid, second=n // args.calls, at=now, fps_in=50,
                rx_q=2, rx_drops=0, rx_drops_total=0, write_ms=0.3, tx_fps=50, tx_q=3,
                tx_drops=0, tx_drops_total=0, send_q=1))  # fmt: skip
    t0 = time.perf_counter()
    recorder.start()
    recorder.flush(timeout=300.0)
    elapsed = time.perf_counter() - t0
    recorder.stop()
    print(
        f"[{args.db}] drain: {args.drain_rows} queued rows written in {elapsed:.2f} s = "
        f"{args.drain_rows / elapsed:.0f} rows/s (batches of 500; 3 partials : 1 sample)"
    )


if __name__ == "__main__":
    print("$ python " + " ".join(shlex.quote(a) for a in sys.argv))
    main()
