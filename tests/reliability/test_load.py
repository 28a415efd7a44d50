"""Load: many simulated calls at once on one server process (STT_ENGINE=none), all GO, no leak.

The server is what `bin/run` serves (uvicorn, one worker).

The figures come from where an operator would read them: each call's GO/NO-GO verdict (judged
from its per-second samples when it ends) in the database, and the server's thread count and
resident memory in /proc/<pid>/status, before, during and after the calls.

The suite runs 10 calls for 8 s. The issue's check, 100 calls for 2 minutes and then 100 more
to show that memory does not grow, takes 5 minutes of both cores, so it runs only when asked:

    .venv/bin/pytest -m load tests/reliability/test_load.py -s
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from telephony.testing.caller import dial_many, run
from telephony.testing.server_process import ServerProcess
from tests.reliability.helpers import call_rows, database_url, proc_status, wait_until

RSS_GROWTH_MAX = 0.10  # after the calls, resident memory within 10 % of where it started


class Sampler:
    """Read a process's threads and memory once a second in the background; keep the peaks."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = proc_status(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-proc-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            now = proc_status(self.pid)
            self.peak = {key: max(self.peak[key], now[key]) for key in now}


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def split_cores() -> tuple[str | None, set[int] | None]:
    """With two cores or more: the server on cpu 0, the callers (this process) on the others.

    The simulated callers are the test's instrument, not part of the line: left to share the
    server's core, their own hiccups would be counted against the server (as in bench/).
    """
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None
    return str(cores[0]), set(cores[1:])


def run_load(
    server: ServerProcess,
    calls: int,
    seconds: float,
    ramp_s: float,
    *,
    rss_baseline_kb: int | None = None,
    caller_cores: set[int] | None = None,
) -> dict[str, Any]:
    """Dial `calls` calls of `seconds` each at `server`; check and return the figures.

    Resident memory after the calls must be within 10 % of `rss_baseline_kb` (default: what
    it was just before them). `caller_cores`: where this process dials from (default: anywhere).
    """
    auth = settings.TWILIO_AUTH_TOKEN
    # Warm up first: the first calls create what a process keeps (thread pools, caches).
    warm = asyncio.run(dial_many(2, server.base_url, auth_token=auth, tail_silence_s=1.0))
    assert all(r.ok for r in warm), [r.summary() for r in warm]
    time.sleep(1.0)
    before = proc_status(server.process.pid)
    server_cpu, callers_cpu = cpu_seconds(server.process.pid), time.process_time()
    t0 = time.monotonic()
    with Sampler(server.process.pid) as sampler:
        dialling = dial_many(
            calls, server.base_url, auth_token=auth, tail_silence_s=seconds, ramp_s=ramp_s
        )
        everywhere = os.sched_getaffinity(0)
        if caller_cores:
            os.sched_setaffinity(0, caller_cores)
        try:
            reports = run(dialling)  # on uvloop: the callers' own cost stays small
        finally:
            os.sched_setaffinity(0, everywhere)
    elapsed = time.monotonic() - t0
    server_cpu = cpu_seconds(server.process.pid) - server_cpu
    callers_cpu = time.process_time() - callers_cpu
    sids = [r.call_sid for r in reports]

    def all_closed() -> dict[str, dict[str, Any]] | None:
        rows = call_rows(database_url(server), sids)
        done = len(rows) == calls and all(row["status"] == "ended" for row in rows.values())
        return rows if done else None

    rows = wait_until(all_closed, 30.0, 0.5)
    assert rows, "not every call was closed"
    # Threads: back to where they were as soon as the calls are over (each joins its own).
    threads_back = wait_until(
        lambda: proc_status(server.process.pid)["threads"] <= before["threads"], 5.0
    )
    time.sleep(2.0)  # let the recorder and the allocator settle before reading memory
    after = proc_status(server.process.pid)
    failed = [r.summary() for r in reports if not r.ok]
    no_go = {sid: row["go_reasons"] for sid, row in rows.items() if not row["go"]}
    figures = {
        "calls": calls,
        "seconds": seconds,
        "elapsed_s": round(elapsed, 1),
        "server_cpu_%": round(100 * server_cpu / elapsed),
        "callers_cpu_%": round(100 * callers_cpu / elapsed),
        "failed": len(failed),
        "go": sum(bool(row["go"]) for row in rows.values()),
        "rx_drops": sum(row["rx_drops"] for row in rows.values()),
        "tx_drops": sum(row["tx_drops"] for row in rows.values()),
        "frames_in": sum(row["frames_in"] for row in rows.values()),
        "threads": (before["threads"], sampler.peak["threads"], after["threads"]),
        "rss_mb": tuple(round(x["rss_kb"] / 1024, 1) for x in (before, sampler.peak, after)),
        "rss_after_kb": after["rss_kb"],
        "worst_jitter_p99_ms": round(max(r.jitter_p99_ms for r in reports), 1),
        "worst_send_late_ms": round(max(r.send_late_max_ms for r in reports), 1),
    }
    print(f"\nload: {figures}")
    if no_go:
        print(f"NO-GO: {dict(list(no_go.items())[:5])}")
    assert not failed, failed[:5]
    assert not no_go, f"{len(no_go)} of {calls} calls NO-GO: {list(no_go.values())[:3]}"
    assert figures["rx_drops"] == 0
    assert all(row["frames_in"] == row["extra"]["frames_written"] for row in rows.values())
    assert threads_back, f"threads {before['threads']} before, {after['threads']} after"
    assert after["threads"] <= before["threads"]
    baseline = before["rss_kb"] if rss_baseline_kb is None else rss_baseline_kb
    assert after["rss_kb"] <= baseline * (1 + RSS_GROWTH_MAX), (figures["rss_mb"], baseline)
    assert "threads still alive" not in server.log_text()
    return figures


def test_ten_calls_at_once_are_all_go_and_leave_nothing_behind(
    server_factory: Callable[..., ServerProcess],
) -> None:
    # Not pinned: ten calls are far from filling a core, and a lone server core shared with
    # the rest of the suite's processes would turn one preemption into a NO-GO write_ms.
    # The default write_ms bound (p99 < 1 ms) over an 8-second call is its single worst second,
    # and in the full suite one preemption of the RX thread by the suite's other processes
    # reaches it (seen twice at 1.00-1.01 ms). Here the server's verdict allows 5 ms, as the
    # gonogo command's test does; every other rule stays, and the 100-call check keeps 1 ms.
    server = server_factory(
        env={"STT_ENGINE": "none", "GO_WRITE_MS_P99_MAX": "5"}, server="uvicorn"
    )
    run_load(server, calls=10, seconds=8.0, ramp_s=2.0)


@pytest.mark.load
def test_a_hundred_calls_for_two_minutes_are_all_go_and_leave_nothing_behind(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server_cores, caller_cores = split_cores()
    server = server_factory(env={"STT_ENGINE": "none"}, server="uvicorn", cpus=server_cores)
    # Five new calls a second: a busy line's arrival rate, not a 100-call thundering herd.
    # The first hundred raise the allocators' high-water mark (glibc and pymalloc keep freed
    # memory for reuse; the product trims glibc's heap once the line is quiet, pymalloc's 1 MiB
    # arenas stay while any object lives in them): RSS rises about 20-25 MB and stays there,
    # so it is judged against where the process stood after one full load.
    first = run_load(
        server, 100, 120.0, ramp_s=20.0, rss_baseline_kb=1 << 40, caller_cores=caller_cores
    )
    # A leak grows with every call: a second hundred must not move RSS past that mark.
    run_load(
        server,
        100,
        120.0,
        ramp_s=20.0,
        rss_baseline_kb=first["rss_after_kb"],
        caller_cores=caller_cores,
    )
