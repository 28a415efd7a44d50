"""Recorded calls end to end: a real server, the simulated Twilio caller, the stored WAV read back.

The file is read from the server's recordings storage (a media root of the test's own) and
decoded: the caller's channel must be, sample for sample, what the caller sent; the line's
what the caller received, with the barge-in's silence where the greeting was cut.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings

from telephony.media.audio import FRAME_BYTES, SAMPLE_RATE, SILENCE_FRAME
from telephony.testing.caller import dial, greeting_s, new_sid
from telephony.testing.server_process import ServerProcess
from telephony.tts.wav import WAVE_FORMAT_MULAW, parse_wav
from tests.helpers.recorded_calls import recording_server
from tests.helpers.recordings import order_status_ulaw
from tests.helpers.serverlog import rms
from tests.reliability.helpers import (
    answer,
    call_rows,
    database_url,
    open_stream,
    query,
    start,
    wait_until,
)
from tests.reliability.hostile import good_frame

pytestmark = pytest.mark.e2e

STORED = re.compile(r"call=(\w+) recording stored: (\S+) \(([\d.]+) s, (\d+) bytes")
GREETING = "Hello, thank you for calling. How can I help you today? Please tell me what you need."


def stored_recording(server: ServerProcess, tmp_path: Path, call_sid: str) -> tuple[bytes, bytes]:
    """Wait for the call's recording to be stored; return its (left, right) mu-law channels."""
    found = wait_until(
        lambda: next((m for m in STORED.finditer(server.log_text()) if m[1] == call_sid), None),
        10.0,
    )
    assert found, server.log_text()[-3000:]
    blob = (tmp_path / "media" / "recordings" / found[2]).read_bytes()
    assert len(blob) == int(found[4])
    audio = parse_wav(blob)
    assert (audio.format_tag, audio.channels, audio.sample_rate) == (WAVE_FORMAT_MULAW, 2, 8000)
    return audio.data[0::2], audio.data[1::2]


def test_a_recorded_call_holds_both_sides_on_the_calls_timeline(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = recording_server(server_factory, tmp_path, GREETING_TEXT=GREETING)
    speech = order_status_ulaw()
    lead_s = 1.0  # the caller talks over the greeting one second in: a barge-in
    report = asyncio.run(
        dial(
            server.base_url,
            auth_token=settings.TWILIO_AUTH_TOKEN,
            audio=speech,
            lead_silence_s=lead_s,
            tail_silence_s=2.0,
            save_received=True,
        )
    )
    assert report.ok, report.summary()
    assert report.clears_received == 1  # the barge-in
    left, right = stored_recording(server, tmp_path, report.call_sid)

    # The recording's length is the call's within one frame.
    sent = report.frames_sent
    assert len(left) == len(right)
    print(f"\nrecording {len(left) // FRAME_BYTES} frames, the caller sent {sent}")
    assert abs(len(left) - sent * FRAME_BYTES) <= FRAME_BYTES, (len(left) / FRAME_BYTES, sent)

    # Left: what the caller sent, sample for sample (and silence after, if a frame longer).
    lead = SILENCE_FRAME * round(lead_s * 50)
    padded = speech + SILENCE_FRAME[: -len(speech) % FRAME_BYTES]
    sent_audio = (lead + padded + SILENCE_FRAME * 100)[: sent * FRAME_BYTES]
    assert len(sent_audio) == sent * FRAME_BYTES
    assert left[: len(sent_audio)] == sent_audio[: len(left)]
    assert set(left[len(sent_audio) :]) <= {SILENCE_FRAME[0]}

    # Right: what the line sent, in order from the first tick (the caller got more: TX ticks
    # on while the call stops, after the end of the recording).
    received = report.received_audio
    assert right == received[: len(right)]

    # The barge-in shows: the greeting plays until the caller has spoken 300 ms, then silence.
    second = SAMPLE_RATE
    assert rms(right[:second]) > 300  # the greeting, before the caller speaks
    quiet = right.find(SILENCE_FRAME * 50, int(lead_s * second))  # a second of nothing at all
    cut_s = quiet / second
    assert lead_s + 0.3 <= cut_s <= lead_s + 1.0, cut_s
    assert cut_s + 1.0 < greeting_s(GREETING)  # long before the greeting's own end
    assert rms(right[int(lead_s * second) : quiet]) > 300  # it was still speaking till then
    assert set(right[quiet:]) == {SILENCE_FRAME[0]}  # and the line stayed quiet


async def vanish(server: ServerProcess) -> str:
    """Start a call, stream one second, then drop the connection without a `stop`."""
    call_sid, stream_sid = new_sid("CA"), new_sid("MZ")
    twiml = await answer(server.base_url, call_sid, settings.TWILIO_AUTH_TOKEN)
    async with open_stream(twiml.url, settings.TWILIO_AUTH_TOKEN) as ws:
        await ws.send(start(call_sid, stream_sid, twiml.parameters))
        for _ in range(50):
            await ws.send(good_frame(stream_sid).data)
            await asyncio.sleep(0.02)
        ws.transport.abort()  # the phone network lost the call
    return call_sid


def test_recordings_are_finished_when_the_caller_vanishes_and_at_sigterm(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = recording_server(server_factory, tmp_path, STREAM_IDLE_TIMEOUT_S="1")
    gone = asyncio.run(vanish(server))
    left, _ = stored_recording(server, tmp_path, gone)
    assert 50 * FRAME_BYTES <= len(left) <= 60 * FRAME_BYTES  # its second, and the drop's moment

    # A call in progress at SIGTERM: the drain finishes and stores its recording before exit.
    async def long_call() -> None:
        call_sid, stream_sid = new_sid("CA"), new_sid("MZ")
        twiml = await answer(server.base_url, call_sid, settings.TWILIO_AUTH_TOKEN)
        async with open_stream(twiml.url, settings.TWILIO_AUTH_TOKEN) as ws:
            await ws.send(start(call_sid, stream_sid, twiml.parameters))
            for _ in range(100):
                await ws.send(good_frame(stream_sid).data)
                await asyncio.sleep(0.02)
            os.kill(server.process.pid, signal.SIGTERM)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 10:  # Twilio keeps streaming until the socket goes
                try:
                    await ws.send(good_frame(stream_sid).data)
                except Exception:
                    return
                await asyncio.sleep(0.02)

    asyncio.run(long_call())
    server.process.wait(timeout=15)
    log = server.log_text()
    assert "records flushed" in log, log[-3000:]
    (sigtermed,) = [m[1] for m in STORED.finditer(log) if m[1] != gone]
    left, _ = stored_recording(server, tmp_path, sigtermed)
    assert len(left) >= 100 * FRAME_BYTES
    rows = query(
        database_url(server),
        "SELECT c.call_sid, r.complete, r.dropped_frames FROM calls_recording r "
        "JOIN calls_call c ON c.id = r.call_id ORDER BY r.id",
    )
    assert rows == [(gone, 1, 0), (sigtermed, 1, 0)]
    assert not list((tmp_path / "spool").iterdir())  # nothing left behind in the spool


def test_a_full_recording_queue_drops_recording_frames_only(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    # One frame per side between the writer's rounds (4 a second): nearly every frame of the
    # recording is refused, as when the writer cannot keep up. The call must not notice.
    server = recording_server(
        server_factory,
        tmp_path,
        RECORDING_QUEUE_FRAMES="1",
        # A shared test machine: one preempted RX write is not what this test is about.
        GO_WRITE_MS_P99_MAX="5",
    )
    report = asyncio.run(
        dial(
            server.base_url,
            auth_token=settings.TWILIO_AUTH_TOKEN,
            audio=order_status_ulaw(),
            lead_silence_s=3.0,
            tail_silence_s=3.0,
        )
    )
    assert report.ok, report.summary()
    left, _ = stored_recording(server, tmp_path, report.call_sid)
    row = call_rows(database_url(server), [report.call_sid])[report.call_sid]
    assert row["go"] is True, row["go_reasons"]
    assert (row["rx_drops"], row["tx_drops"]) == (0, 0)
    assert row["frames_in"] == row["extra"]["frames_written"] == report.frames_sent
    dropped = row["extra"]["recording_dropped"]
    assert dropped > report.frames_sent  # most frames of both sides
    ((recorded_drops,),) = query(database_url(server), "SELECT dropped_frames FROM calls_recording")
    assert recorded_drops == dropped
    # The recording still spans the call; what was dropped is silence in it.
    assert abs(len(left) - report.frames_sent * FRAME_BYTES) <= FRAME_BYTES
    print(f"\nrecording frames dropped: {dropped} of {2 * report.frames_sent}; the call GO")
