"""One call's Media Stream: paced media out, and Twilio's playback of what the server sends.

The sender and the receiver are two coroutines over one `CallState`. The sender wakes on the
shared ticker, sends the frames that are due and echoes the marks whose audio has played; the
receiver plays what the server sends into `TwilioPlayback`, timing each frame's arrival.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import json
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from telephony.media.audio import FRAME_MS
from telephony.metrics.stats import IntervalHistogram
from telephony.testing.caller.frames import FRAME_S, dtmf_plan, frames_due
from telephony.testing.caller.messages import (
    MEDIA_TEMPLATE,
    connected_message,
    dtmf_message,
    mark_message,
    start_message,
    stop_message,
)
from telephony.testing.caller.playback import TwilioPlayback
from telephony.testing.caller.report import CallReport, ProgressCallback
from telephony.testing.caller.ticker import Ticker

BURST_YIELD = 50  # when catching up (or not pacing), yield to the loop after this many sends


@dataclass
class CallState:
    """Per-call state shared by the sending and the receiving coroutine."""

    report: CallReport
    playback: TwilioPlayback
    save_received: bool
    rx: IntervalHistogram = field(default_factory=IntervalHistogram)
    outbox: list[str] = field(default_factory=list)  # marks to echo on the next tick
    received: list[bytes] = field(default_factory=list)
    start_sent_at: float = 0.0


class Sender:
    """The one place a call sends from: numbers every message in order."""

    __slots__ = ("_send", "call", "seq")

    def __init__(self, ws: ClientConnection, call: CallState) -> None:
        self._send = ws.send
        self.call = call
        self.seq = 0  # `connected` has no number; `start` is 1

    async def connected(self) -> None:
        """Send the stream's opening message."""
        await self._send(connected_message())

    async def message(self, build: Callable[..., str], **fields: Any) -> None:
        """Send a built message with the next sequence number."""
        self.seq += 1
        await self._send(build(sequence_number=self.seq, **fields))

    async def media(self, k: int, payload_b64: str) -> None:
        """Send frame `k` (0-based) of the call's audio."""
        self.seq += 1
        await self._send(
            MEDIA_TEMPLATE
            % (self.seq, k + 1, k * FRAME_MS, payload_b64, self.call.report.stream_sid)
        )

    async def dtmf(self, digit: str) -> None:
        """Send one key press."""
        await self.message(dtmf_message, digit=digit, stream_sid=self.call.report.stream_sid)
        self.call.report.dtmf_sent += 1

    async def echo_marks(self, names: list[str]) -> None:
        """Echo marks whose audio has played (or was cleared)."""
        report = self.call.report
        for name in names:
            await self.message(mark_message, name=name, stream_sid=report.stream_sid)
            report.marks_echoed += 1
            report.echoed_marks.append(name)


async def stream_call(
    ws: ClientConnection,
    call: CallState,
    *,
    loop: asyncio.AbstractEventLoop,
    ticker: Ticker,
    frames: list[str],
    dtmf: Sequence[tuple[float, str]],
    account_sid: str,
    custom_parameters: dict[str, str],
    speed: float,
    close_wait_s: float,
    on_progress: ProgressCallback | None,
) -> None:
    """Run the stream: connected, start, paced media, stop; echo marks as audio plays."""
    report = call.report
    out = Sender(ws, call)
    pending_dtmf = deque(dtmf_plan(dtmf))
    total = len(frames)
    receiver: asyncio.Task[None] | None = None
    hung_up = False
    try:
        await out.connected()
        await out.message(
            start_message,
            account_sid=account_sid,
            call_sid=report.call_sid,
            stream_sid=report.stream_sid,
            custom_parameters=custom_parameters,
        )
        call.start_sent_at = loop.time()
        receiver = loop.create_task(receive(ws, call, loop), name=f"caller-rx-{report.call_sid}")
        next_progress = call.start_sent_at + 1.0
        if on_progress is not None:
            on_progress(report)  # the call is up: let the watcher count it from now on
        t0: float | None = None
        with ticker.subscribed():
            while report.frames_sent < total and not receiver.done():
                now = await ticker.wait()
                if t0 is None:
                    t0 = now  # frame k is due at t0 + k * 20 ms / speed, on the tick grid
                due = frames_due(now - t0, speed=speed, total=total)
                while report.frames_sent < due and not receiver.done():
                    k = report.frames_sent
                    while pending_dtmf and pending_dtmf[0][0] <= k:
                        await out.dtmf(pending_dtmf.popleft()[1])
                    if not math.isinf(speed):
                        late_ms = (loop.time() - t0 - k * FRAME_S / speed) * 1000
                        report.send_late_max_ms = max(report.send_late_max_ms, late_ms)
                    await out.media(k, frames[k])
                    report.frames_sent = k + 1
                    if (k + 1) % BURST_YIELD == 0 and k + 1 < due:
                        await asyncio.sleep(0)  # catching up: let other calls and our receiver run
                call.outbox.extend(call.playback.advance(now))
                if call.outbox:
                    marks, call.outbox = call.outbox, []
                    await out.echo_marks(marks)
                if on_progress is not None and now >= next_progress:
                    next_progress += 1.0
                    refresh_report(call)
                    on_progress(report)
        if not receiver.done():
            while pending_dtmf:  # key presses timed after the audio still go out before hanging up
                await out.dtmf(pending_dtmf.popleft()[1])
            await out.message(
                stop_message,
                account_sid=account_sid,
                call_sid=report.call_sid,
                stream_sid=report.stream_sid,
            )
            hung_up = True
    except ConnectionClosed:
        pass  # the server went first; the close code tells how
    try:
        if hung_up and receiver is not None:
            # Twilio hangs up after `stop`; give the server a moment to close its side first.
            done, _ = await asyncio.wait({receiver}, timeout=close_wait_s)
            if not done:
                report.closed_by = "caller"
                await ws.close()
        if receiver is not None:
            await receiver
    finally:
        if receiver is not None and not receiver.done():
            receiver.cancel()
    report.closed_by = report.closed_by or "server"


async def receive(ws: ClientConnection, call: CallState, loop: asyncio.AbstractEventLoop) -> None:
    """Take what the server sends: media into playback, marks in line, clear at once."""
    report, playback = call.report, call.playback
    stream_sid = report.stream_sid
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            now = loop.time()
            if not isinstance(message, str):
                report.bad_messages += 1  # Twilio rejects binary frames (error 31950)
                continue
            try:
                msg = json.loads(message)
                if msg.get("streamSid") != stream_sid:
                    raise ValueError("wrong streamSid")
                event = msg["event"]
                if event == "media":
                    frame = binascii.a2b_base64(msg["media"]["payload"])
                    playback.receive_media(frame)
                    # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds,
                    # too coarse for the 20 ms jitter figures.
                    call.rx.tick(time.perf_counter())
                    if report.first_media_ms is None:
                        report.first_media_ms = (now - call.start_sent_at) * 1000
                    if call.save_received:
                        call.received.append(frame)
                elif event == "mark":
                    playback.receive_mark(str(msg["mark"]["name"]))
                    report.marks_received += 1
                elif event == "clear":
                    report.clears_received += 1
                    report.clear_at.append(time.perf_counter())
                    call.outbox.extend(playback.receive_clear())
                else:
                    report.bad_messages += 1
            except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
                report.bad_messages += 1


def refresh_report(call: CallState) -> None:
    """Copy the live counters into the report."""
    report, playback = call.report, call.playback
    report.frames_received = playback.frames_received
    report.frames_played = playback.frames_played
    report.frames_cleared = playback.frames_cleared


def finish_report(call: CallState) -> None:
    """Fill in the figures that are computed once, at the end."""
    refresh_report(call)
    report = call.report
    report.jitter_p50_ms, report.jitter_p99_ms, report.jitter_max_ms = call.rx.summary()
    if call.save_received:
        report.received_audio = b"".join(call.received)
