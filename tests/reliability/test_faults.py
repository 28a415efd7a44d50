"""Faults: a failing or stalling STT engine, callers who vanish, SIGTERM, a crash, a DB outage.

The invariant throughout: every frame received is written to STT or counted as dropped, every
FINAL reaches the database, every call is closed with a reason, and no thread outlives its call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ClassVar

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from websockets.exceptions import ConnectionClosed

from calls.models import Call, MetricSample
from telephony import stt
from telephony.media.audio import SILENCE_FRAME
from telephony.stt.base import EventSink, HypothesisSink, SttEngine, SttSession
from telephony.testing.caller import CallReport, dial, dial_many, new_sid, speech_audio
from telephony.testing.server_process import REPO_ROOT, ServerProcess, run_server, stop_server
from tests.reliability.conftest import PG_HOST, PG_PORT
from tests.reliability.helpers import (
    answer,
    call_rows,
    close_code,
    database_url,
    final_texts,
    open_stream,
    proc_status,
    signed_headers,
    start,
    stop,
    until_closed,
    wait_until,
)
from tests.reliability.hostile import good_frame
from tests.reliability.netproxy import TcpProxy

PHRASES = ("I would like to check the status of my order", "please send me a new card")


def background(coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
    """Run a coroutine on an event loop of its own, in a thread (the test thread stays free)."""
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def run() -> None:
        try:
            future.set_result(asyncio.run(coro))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name="test-callers", daemon=True).start()
    return future


def silence(seconds: float) -> bytes:
    return SILENCE_FRAME * round(seconds * 50)


def finals_logged(log: str, call_sid: str) -> list[str]:
    return re.findall(rf"\[FINAL\] call={call_sid} (.*) \(latency_ms=", log)


# --- STT errors and stalls, in process ----------------------------------------------------------


class FaultySession(SttSession):
    """Raises on some writes, blocks on others; counts the frames it really took."""

    def __init__(self, errors: set[int], stalls: dict[int, float]) -> None:
        self.errors, self.stalls = errors, stalls
        self.writes = 0
        self.frames = 0

    def write(self, frame: bytes) -> None:
        self.writes += 1
        if self.writes in self.errors:
            raise RuntimeError(f"injected STT error at write {self.writes}")
        if self.writes in self.stalls:
            time.sleep(self.stalls[self.writes])
        self.frames += 1

    def close(self, timeout: float = 1.0) -> None:
        pass


class FaultyEngine(SttEngine):
    """Ten writes fail at 1 s; a 0.5 s stall at 2 s (the queue holds it); a 2 s stall at 4 s."""

    name = "faulty-test"
    errors: ClassVar[set[int]] = set(range(50, 60))
    stalls: ClassVar[dict[int, float]] = {100: 0.5, 200: 2.0}
    sessions: ClassVar[list[FaultySession]] = []

    @classmethod
    def from_settings(cls) -> FaultyEngine:
        return cls()

    def open(
        self, call_sid: str, on_hypothesis: HypothesisSink, *, on_event: EventSink | None = None
    ) -> FaultySession:
        session = FaultySession(self.errors, self.stalls)
        self.sessions.append(session)
        return session


@pytest.fixture
def faulty_app(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The ASGI app with the faulty engine, and an RX queue of 1 s the long stall outlasts."""
    FaultyEngine.sessions.clear()
    monkeypatch.setitem(stt.ENGINES, FaultyEngine.name, f"{__name__}:FaultyEngine")
    settings.STT_ENGINE = FaultyEngine.name
    settings.RX_QUEUE_FRAMES = 50
    settings.PUBLIC_BASE_URL = "https://line.example.com"
    settings.GREETING_TEXT = ""
    from project.asgi import application

    return application


@pytest.mark.django_db(transaction=True)
async def test_stt_errors_and_stalls_mid_call_lose_no_audio(
    faulty_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    engine, application = FaultyEngine, faulty_app
    call_sid, stream_sid = new_sid("CA"), new_sid("MZ")
    comm = WebsocketCommunicator(application, "/twilio/stream/", headers=signed_headers())
    assert (await comm.connect())[0]
    await comm.send_to(text_data=start(call_sid, stream_sid))
    loop, frame, sent = asyncio.get_running_loop(), good_frame(stream_sid).data, 300
    t0 = loop.time()
    for n in range(sent):  # real time: 20 ms apart, as Twilio sends them
        await asyncio.sleep(max(0.0, t0 + n * 0.02 - loop.time()))
        await comm.send_to(text_data=frame)
    await comm.send_to(text_data=stop(call_sid, stream_sid))
    assert (await until_closed(comm))[-1]["code"] == 1000

    call = await Call.objects.aget(call_sid=call_sid)
    (session,) = engine.sessions
    written = call.extra["frames_written"]
    assert call.frames_in == sent
    assert written == session.frames  # what the engine really took, no more, no less
    assert written + call.rx_drops == sent
    queue_drops = call.rx_drops - len(engine.errors)
    assert 20 <= queue_drops <= 60, queue_drops  # the 2 s stall: about 1 s of audio beyond q
    # RX went on after the errors and both stalls: every frame the queue kept was offered.
    assert session.writes == sent - queue_drops
    samples = [s async for s in MetricSample.objects.filter(call=call).order_by("second")]
    assert sum(s.rx_drops for s in samples[:3]) == len(engine.errors)  # the short stall: no loss
    assert max(s.rx_q for s in samples) >= 45  # the long one filled the queue
    failures = [r for r in caplog.records if "STT write failed" in r.getMessage()]
    assert len(failures) == 1  # logged once, counted always
    assert not [t for t in threading.enumerate() if call_sid in t.name]


# --- callers who vanish -------------------------------------------------------------------------


async def vanish(server: ServerProcess, how: str) -> tuple[dict[str, Any] | None, float]:
    """Start a call, stream 1 s, then disappear: `drop` the TCP connection, or go `silent`.

    Return the call's row once the database shows it ended, and how long after that took.
    """
    call_sid, stream_sid = new_sid("CA"), new_sid("MZ")
    twiml = await answer(server.base_url, call_sid, settings.TWILIO_AUTH_TOKEN)

    def ended() -> dict[str, Any] | None:
        row = call_rows(database_url(server), [call_sid]).get(call_sid)
        return row if row and row["status"] == "ended" else None

    async with open_stream(twiml.url, settings.TWILIO_AUTH_TOKEN) as ws:
        await ws.send(start(call_sid, stream_sid, twiml.parameters))
        for _ in range(50):
            await ws.send(good_frame(stream_sid).data)
            await asyncio.sleep(0.02)
        gone_at = time.monotonic()
        if how == "drop":
            ws.transport.abort()  # no close frame, no `stop`: the phone network lost the call
        # else half-open: the socket stays up and nothing more comes
        row = await asyncio.to_thread(wait_until, ended, 5.0, 0.02)
        closed_after = time.monotonic() - gone_at
        if how == "silent":
            assert (await close_code(ws, 5.0))[0] == 4001  # the server gave up on us (1001)
        return row, closed_after


def test_a_caller_who_vanishes_is_closed_flushed_and_gone_within_2_s(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(env={"STT_ENGINE": "none", "STREAM_IDLE_TIMEOUT_S": "1"})
    warm = asyncio.run(dial(server.base_url, auth_token=settings.TWILIO_AUTH_TOKEN))
    assert warm.ok, warm.summary()
    time.sleep(0.5)
    baseline = proc_status(server.process.pid)["threads"]
    for how, reason in (("drop", "disconnect (code 1006)"), ("silent", "no message for 1.")):
        row, closed_after = asyncio.run(vanish(server, how))
        assert row, f"{how}: call not closed"
        assert closed_after < 2.0, f"{how}: closed {closed_after:.2f} s after the caller went"
        assert row["end_reason"].startswith(reason), row["end_reason"]
        assert row["frames_in"] == row["extra"]["frames_written"] == 50
        threads = wait_until(
            lambda: proc_status(server.process.pid)["threads"] <= baseline, 2.0 - closed_after
        )
        assert threads, f"{how}: {proc_status(server.process.pid)} vs {baseline} threads"
        print(f"\n{how}: closed and flushed {closed_after:.2f} s after the caller vanished")
    assert "threads still alive" not in server.log_text()


# --- SIGTERM ------------------------------------------------------------------------------------


def test_sigterm_drains_the_calls_in_progress_under_daphne(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(env={"STT_ENGINE": "whisper", "GREETING_TEXT": "Hi."})
    first, second = (speech_audio(p) for p in PHRASES)
    lead_s, gap_s = 1.0, 2.5
    # The speaker's second phrase is cut by the shutdown.
    speaker = background(
        dial(
            server.base_url,
            auth_token=settings.TWILIO_AUTH_TOKEN,
            audio=first + silence(gap_s) + second,
            lead_silence_s=lead_s,
            tail_silence_s=10.0,
        )
    )
    listener = background(
        dial(server.base_url, auth_token=settings.TWILIO_AUTH_TOKEN, tail_silence_s=20.0)
    )
    t0 = time.monotonic()
    assert wait_until(lambda: "[FINAL] call=" in server.log_text(), 20.0), server.log_text()
    into_second_s = lead_s + len(first) / 8000 + gap_s + 1.0
    time.sleep(max(0.0, into_second_s - (time.monotonic() - t0)))
    calls = re.findall(r"call=(CA\w+) stream \w+ started", server.log_text())
    assert len(calls) == 2

    os.kill(server.process.pid, signal.SIGTERM)
    sent = time.monotonic()
    server.process.wait(timeout=15)
    exited_s = time.monotonic() - sent
    log = server.log_text()
    print(f"\nSIGTERM: daphne exited in {exited_s:.2f} s; " + log.split("shutdown: ")[-1][:80])
    assert exited_s < settings.SHUTDOWN_DRAIN_S + 2.0
    assert "shutdown: 2 of 2 call(s) finished, records flushed" in log
    rows = call_rows(database_url(server), calls)
    for sid in calls:
        assert rows[sid]["status"] == "ended"
        assert rows[sid]["end_reason"] == "server shutdown"
        assert rows[sid]["frames_in"] == rows[sid]["extra"]["frames_written"]
        # Every FINAL the server published is in the database, the last one made at shutdown.
        assert final_texts(database_url(server), sid) == finals_logged(log, sid)
    spoken = [sid for sid in calls if finals_logged(log, sid)]
    assert len(spoken) == 1
    # The phrase cut by SIGTERM gets its FINAL when STT closes, if whisper decodes it within the
    # call's stop time (1 s; a loaded machine may not): either way, what was published is kept.
    print(f"FINALs of the speaker: {finals_logged(log, spoken[0])}")
    assert 1 <= len(finals_logged(log, spoken[0])) <= 2
    for caller in (speaker, listener):
        report: CallReport = caller.result(timeout=10)
        assert report.close_code not in (1000, None)  # the server went away under them


def test_sigterm_drains_the_calls_in_progress_under_uvicorn(tmp_path: Path) -> None:
    env = {"STT_ENGINE": "none", "STREAM_IDLE_TIMEOUT_S": "2"}
    with run_server(env, workdir=tmp_path, server="uvicorn") as server:  # what bin/run serves
        callers = background(
            dial_many(2, server.base_url, auth_token=settings.TWILIO_AUTH_TOKEN, tail_silence_s=20)
        )

        async def too_big() -> tuple[str, int | None]:
            call_sid, stream_sid = new_sid("CA"), new_sid("MZ")
            twiml = await answer(server.base_url, call_sid, settings.TWILIO_AUTH_TOKEN)
            async with open_stream(twiml.url, settings.TWILIO_AUTH_TOKEN) as ws:
                await ws.send(start(call_sid, stream_sid, twiml.parameters))
                try:
                    await ws.send("z" * 10_000_000)
                except ConnectionClosed as closed:  # refused while still being sent
                    return call_sid, closed.rcvd.code if closed.rcvd else None
                return call_sid, (await close_code(ws))[0]

        big_sid, big_code = asyncio.run(too_big())
        sent_at = time.monotonic()
        assert big_code == 1009  # uvicorn refuses a message over --ws-max-size with 1009
        # ... but its websockets implementation never tells the app the socket is gone: the
        # consumer's idle watchdog is what ends that call.
        big = wait_until(
            lambda: (
                (r := call_rows(database_url(server), [big_sid]).get(big_sid))
                and r["status"] == "ended"
                and r
            ),
            5.0,
        )
        assert big, server.log_text()[-3000:]
        assert time.monotonic() - sent_at < 2.0 + 1.5
        assert big["end_reason"].startswith(("no message for 2.", "disconnect (code 1009)"))

        started = re.compile(r"stream \w+ started")
        assert wait_until(lambda: len(started.findall(server.log_text())) >= 3, 10)
        os.kill(server.process.pid, signal.SIGTERM)
        sent = time.monotonic()
        server.process.wait(timeout=15)
        exited_s = time.monotonic() - sent
        log = server.log_text()
        print(f"\nSIGTERM: uvicorn exited in {exited_s:.2f} s")
        assert exited_s < settings.SHUTDOWN_DRAIN_S + 2.0, log[-2000:]
        reports = callers.result(timeout=10)
        rows = call_rows(database_url(server), [r.call_sid for r in reports])
        for report in reports:
            row = rows[report.call_sid]
            assert row["status"] == "ended", row
            # uvicorn closes every socket with 1012 (service restart) and waits for the app.
            assert row["end_reason"] == "server shutdown (code 1012)", row["end_reason"]
            assert row["frames_in"] == row["extra"]["frames_written"] > 0
        assert "Traceback" not in log, log[-3000:]


# --- a crash, then a start ----------------------------------------------------------------------

CRASHED_CALLS = """
from datetime import timedelta
from django.utils import timezone
from calls import services
from calls.rows import CallAnswer, StreamEnd, StreamStart
now = timezone.now()
ago = now - timedelta(minutes=5)
services.call_stream_started(StreamStart(call_sid="CA-crashed", stream_sid="MZ-1", started_at=ago))
services.call_answered(CallAnswer(call_sid="CA-never-streamed", at=ago))
services.call_stream_started(
    StreamStart(call_sid="CA-elsewhere", stream_sid="MZ-2", started_at=now)
)
services.call_stream_started(StreamStart(call_sid="CA-done", stream_sid="MZ-3", started_at=ago))
services.call_ended(StreamEnd(call_sid="CA-done", reason="stop", ended_at=ago, totals={}))
"""


def test_calls_left_active_by_a_crashed_process_are_closed_at_start_up(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    env = {**os.environ, "DATABASE_URL": url, "STT_ENGINE": "none"}
    for args in (["migrate", "--noinput", "-v", "0"], ["shell", "-c", CRASHED_CALLS]):
        subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=env, check=True,
            capture_output=True, timeout=120,
        )  # fmt: skip
    before = call_rows(url)
    assert [before[s]["status"] for s in ("CA-crashed", "CA-elsewhere")] == ["active", "active"]

    server = server_factory(env={"DATABASE_URL": url, "STT_ENGINE": "none"}, migrate=False)
    rows = call_rows(database_url(server))
    assert (rows["CA-crashed"]["status"], rows["CA-crashed"]["end_reason"]) == (
        "interrupted",
        "process went away",
    )
    assert rows["CA-never-streamed"]["status"] == "failed"
    assert rows["CA-elsewhere"]["status"] == "active"  # seen just now: another live process's
    assert rows["CA-done"] == before["CA-done"]
    assert "marked 1 call(s) interrupted and 1 failed" in server.log_text()


# --- a database outage mid-call -----------------------------------------------------------------


@pytest.mark.postgres
def test_a_database_outage_mid_call_loses_no_final(
    pg_database: str, server_factory: Callable[..., ServerProcess]
) -> None:
    proxy = TcpProxy([(PG_HOST, PG_PORT)]).start()
    server = None
    try:
        through_proxy = pg_database.replace(f"{PG_HOST}:{PG_PORT}", f"127.0.0.1:{proxy.port}")
        server = server_factory(
            env={
                "DATABASE_URL": through_proxy,
                "STT_ENGINE": "whisper",
                "GREETING_TEXT": "Hi.",
                "RECORDER_RETRY_MAX_S": "0.5",
            }
        )
        first, second = (speech_audio(p) for p in PHRASES)
        caller = background(
            dial(
                server.base_url,
                auth_token=settings.TWILIO_AUTH_TOKEN,
                audio=first + silence(2.0) + second,
                lead_silence_s=1.0,
                tail_silence_s=3.0,
            )
        )
        assert wait_until(
            lambda: "stream" in server.log_text() and "started" in server.log_text(), 10
        )
        proxy.cut()  # the database is gone: connections reset, new ones refused
        assert wait_until(lambda: len(re.findall(r"\[FINAL\]", server.log_text())) >= 2, 30)
        assert "database unavailable" in server.log_text()
        time.sleep(1.0)
        proxy.restore()
        report = caller.result(timeout=30)
        assert report.ok, report.summary()
        sid = report.call_sid
        row = wait_until(
            lambda: (r := call_rows(pg_database, [sid]).get(sid)) and r["status"] == "ended" and r,
            15.0,
            0.2,
        )
        log = server.log_text()
        assert row, log[-3000:]
        assert "database back after" in log
        logged = finals_logged(log, sid)
        assert len(logged) == 2
        assert final_texts(pg_database, sid) == logged  # both made while it was down
        assert row["finals"] == 2
        assert row["frames_in"] == row["extra"]["frames_written"] == report.frames_sent
    finally:
        if server is not None:
            stop_server(server.process)  # while its database is reachable: it flushes on exit
        proxy.stop()
