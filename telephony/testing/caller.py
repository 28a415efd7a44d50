"""A simulated Twilio caller: dials our webhook and streams a call exactly as Twilio would.

Two layers. The pure one (`TwilioPlayback`, the message builders, `frames_due`)
models what Twilio does with the audio we send it and is tested without sockets or sleeps. The
asyncio one (`dial`, `dial_many`) POSTs the signed voice webhook, follows the TwiML to the
`<Stream>` URL, and speaks the Media Streams protocol over `websockets`.

Like Twilio it also POSTs the stream status callbacks (stream-started, stream-stopped) when
the TwiML names one.

It has to stay cheap: benchmarks drive 100 calls from one core. So every call in a process
paces itself on one shared 20 ms `Ticker` (one timer for all calls, not one per call), outgoing
media JSON is formatted from a template around base64 payloads encoded once per audio clip,
compression is off (Twilio does not compress), and `run` picks uvloop when it is installed.
"""

from __future__ import annotations

import asyncio
import audioop  # deprecated in 3.12, removed in 3.13; the machines run 3.11 (see DESIGN.md)
import base64
import binascii
import contextlib
import functools
import json
import math
import secrets
import time
import wave
import weakref
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import aiohttp
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from telephony.media.audio import (
    FRAME_MS,
    SAMPLE_RATE,
    SILENCE_FRAME,
    pcm16_to_ulaw,
    resample_pcm16,
    split_frames,
    ulaw_to_pcm16,
)
from telephony.metrics.stats import IntervalHistogram

FRAME_S = FRAME_MS / 1000
VOICE_PATH = "/twilio/voice/"
SIGNATURE_HEADER = "X-Twilio-Signature"
USER_AGENT = "TwilioProxy/1.1"  # what Twilio's media servers announce
# Close codes that end a call cleanly; 1005 is "no status" (a bare close frame).
CLEAN_CLOSE_CODES = frozenset({1000, 1001, 1005})
DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
DEFAULT_FROM = "+15005550006"
DEFAULT_TO = "+15005550001"
_SILENCE_B64 = base64.b64encode(SILENCE_FRAME).decode("ascii")
# Outgoing media is the bulk of what a caller sends: format it from a template instead of
# building a dict and running json.dumps 50 times a second per call.
_MEDIA_TEMPLATE = (
    '{"event":"media","sequenceNumber":"%d","media":{"track":"inbound","chunk":"%d",'
    '"timestamp":"%d","payload":"%s"},"streamSid":"%s"}'
)
T = TypeVar("T")
_BURST_YIELD = 50  # when catching up (or not pacing), yield to the loop after this many sends


def new_sid(prefix: str) -> str:
    """Return a Twilio-shaped SID: a two-letter prefix and 32 hex digits."""
    return prefix + secrets.token_hex(16)


# --- Pure: message shapes ----------------------------------------------------------------------


def connected_message() -> str:
    """Build the first message of a stream."""
    return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def start_message(
    *,
    sequence_number: int,
    account_sid: str,
    call_sid: str,
    stream_sid: str,
    custom_parameters: dict[str, str],
) -> str:
    """Build the `start` message: who is calling and what the audio is."""
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": str(sequence_number),
            "start": {
                "accountSid": account_sid,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": custom_parameters,
                "mediaFormat": {
                    "encoding": "audio/x-mulaw",
                    "sampleRate": SAMPLE_RATE,
                    "channels": 1,
                },
            },
            "streamSid": stream_sid,
        }
    )


def media_message(
    *, sequence_number: int, chunk: int, timestamp_ms: int, payload_b64: str, stream_sid: str
) -> str:
    """Build one inbound `media` message around an already base64-encoded 20 ms frame."""
    return _MEDIA_TEMPLATE % (sequence_number, chunk, timestamp_ms, payload_b64, stream_sid)


def dtmf_message(*, sequence_number: int, digit: str, stream_sid: str) -> str:
    """Build a `dtmf` message for one key press."""
    return json.dumps(
        {
            "event": "dtmf",
            "streamSid": stream_sid,
            "sequenceNumber": str(sequence_number),
            "dtmf": {"track": "inbound_track", "digit": digit},
        }
    )


def mark_message(*, sequence_number: int, name: str, stream_sid: str) -> str:
    """Build the echo of a mark whose audio has played (or was cleared)."""
    return json.dumps(
        {
            "event": "mark",
            "sequenceNumber": str(sequence_number),
            "streamSid": stream_sid,
            "mark": {"name": name},
        }
    )


def stop_message(*, sequence_number: int, account_sid: str, call_sid: str, stream_sid: str) -> str:
    """Build the `stop` message that ends the stream (the caller hung up)."""
    return json.dumps(
        {
            "event": "stop",
            "sequenceNumber": str(sequence_number),
            "streamSid": stream_sid,
            "stop": {"accountSid": account_sid, "callSid": call_sid},
        }
    )


@functools.lru_cache(maxsize=16)
def encode_frames(audio: bytes) -> tuple[str, ...]:
    """Cut mu-law audio into 20 ms frames and base64 each one (cached: calls share a clip)."""
    return tuple(base64.b64encode(frame).decode("ascii") for frame in split_frames(audio))


def frames_due(elapsed_s: float, *, speed: float, total: int) -> int:
    """Return how many frames should have been sent `elapsed_s` after the first one.

    Frame k is due at k * 20 ms / speed. Half a frame of tolerance keeps a tick that wakes a
    millisecond early or late from sending 0 frames and then 2.
    """
    if elapsed_s < 0:
        return 0
    if math.isinf(speed):
        return total
    return min(total, math.floor(elapsed_s * speed / FRAME_S + 0.5) + 1)


# --- Pure: Twilio's playback buffer ------------------------------------------------------------


class TwilioPlayback:
    """Twilio's side of outbound audio: a buffer played at real time, with marks in line.

    Audio that arrives faster than real time waits in the buffer; a mark is echoed once every
    frame received before it has played; `clear` drops what is buffered and releases every
    pending mark at once. When the buffer runs dry, the next frame starts when it arrives.
    """

    def __init__(self, clock: Callable[[], float], *, sample_rate: int = SAMPLE_RATE) -> None:
        self._clock = clock
        self._bytes_per_s = sample_rate  # mu-law: one byte per sample
        self._items: deque[bytes | str] = deque()  # frames (bytes) and mark names (str), in order
        self._buffered = 0  # frames in `_items`
        self._cursor = 0.0  # when the frame at the head of the buffer starts (started) playing
        self.frames_received = 0
        self.frames_played = 0
        self.frames_cleared = 0
        self.played_s = 0.0
        self.max_buffered = 0

    @property
    def buffered_frames(self) -> int:
        """Frames received and not yet played."""
        return self._buffered

    @property
    def pending_marks(self) -> list[str]:
        """Names of marks not yet reached, in order."""
        return [item for item in self._items if isinstance(item, str)]

    def receive_media(self, frame: bytes) -> None:
        """Queue one payload of mu-law audio for playback."""
        if not frame:
            return
        if self._buffered == 0:
            # Nothing left to play: this frame starts now, not when the last one ended.
            self._cursor = max(self._cursor, self._clock())
        self._items.append(frame)
        self._buffered += 1
        self.frames_received += 1
        self.max_buffered = max(self.max_buffered, self._buffered)

    def receive_mark(self, name: str) -> None:
        """Queue a mark behind the audio received so far."""
        self._items.append(name)

    def receive_clear(self) -> list[str]:
        """Drop the buffered audio and return every pending mark, to be echoed at once."""
        marks = [item for item in self._items if isinstance(item, str)]
        self.frames_cleared += self._buffered
        self._items.clear()
        self._buffered = 0
        return marks

    def advance(self, now: float) -> list[str]:
        """Play everything that has finished by `now`; return the marks reached, in order."""
        reached: list[str] = []
        items = self._items
        while items:
            head = items[0]
            if isinstance(head, str):
                reached.append(head)
                items.popleft()
                continue
            duration = len(head) / self._bytes_per_s
            if self._cursor + duration > now + 1e-9:  # float sums of 0.02 must not miss a frame
                break
            items.popleft()
            self._cursor += duration
            self._buffered -= 1
            self.frames_played += 1
            self.played_s += duration
        return reached


# --- Pure: TwiML --------------------------------------------------------------------------------


class ConnectStream(NamedTuple):
    """What a `<Connect><Stream>` tells Twilio to do."""

    url: str
    parameters: dict[str, str]
    status_callback: str = ""  # where Twilio POSTs stream-started / stream-stopped


def parse_connect_stream(twiml: str) -> ConnectStream:
    """Read the `<Connect><Stream>` of a TwiML document: URL, `<Parameter>`s, status callback."""
    try:
        root = ET.fromstring(twiml)
    except ET.ParseError as exc:
        raise CallError(f"TwiML is not XML: {exc}") from exc
    stream = root.find("./Connect/Stream")
    if stream is None or not stream.get("url"):
        raise CallError(f"TwiML has no <Connect><Stream url>: {twiml[:200]!r}")
    parameters = {
        p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter") if p.get("name")
    }
    return ConnectStream(stream.get("url", ""), parameters, stream.get("statusCallback", ""))


# --- Audio helpers ------------------------------------------------------------------------------


def speech_audio(text: str) -> bytes:
    """Render `text` as caller audio (8 kHz mu-law) with the espeak engine."""
    from telephony.tts import get_tts_engine  # lazy: only callers that speak need the engine

    return get_tts_engine("espeak").synthesize(text)


def read_wav_as_ulaw(path: str | Path) -> bytes:
    """Read a PCM WAV of any rate, width and channel count as 8 kHz mono mu-law."""
    with wave.open(str(path), "rb") as wav:
        channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
        data = wav.readframes(wav.getnframes())
    if width == 1:
        data = audioop.bias(data, 1, -128)  # 8-bit WAV is unsigned; audioop expects signed
    if width != 2:
        data = audioop.lin2lin(data, width, 2)
    if channels == 2:
        data = audioop.tomono(data, 2, 0.5, 0.5)
    elif channels != 1:
        raise ValueError(f"{path}: {channels} channels; only mono and stereo are supported")
    return pcm16_to_ulaw(resample_pcm16(data, rate, SAMPLE_RATE))


def write_ulaw_wav(path: str | Path, ulaw: bytes) -> None:
    """Write mu-law audio as a 16-bit PCM WAV at 8 kHz (plays anywhere)."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(ulaw_to_pcm16(ulaw))


# --- The shared pacing clock --------------------------------------------------------------------


class Ticker:
    """One 20 ms heartbeat for every call on an event loop.

    A call awaits `wait()` and wakes on the next tick with the loop time. One timer serves all
    calls, so 100 calls cost one wake-up per tick plus one task step each, not 100 timers.
    The tick runs on a deadline and restarts from "now" when it falls a whole period behind,
    so a stall does not turn into a burst of ticks.
    """

    def __init__(self, period_s: float = FRAME_S) -> None:
        self.period_s = period_s
        self._waiters: list[asyncio.Future[float]] = []
        self._users = 0
        self._task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def subscribed(self) -> Iterator[Ticker]:
        """Keep the ticker running while the block runs."""
        self._users += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="caller-ticker")
        try:
            yield self
        finally:
            self._users -= 1
            if self._users == 0 and self._task is not None:
                self._task.cancel()
                self._task = None

    async def wait(self) -> float:
        """Sleep until the next tick; return its loop time."""
        # Each waiter has its own future, so cancelling one call never cancels the others.
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            deadline += self.period_s
            delay = deadline - loop.time()
            if delay < -self.period_s:
                deadline = loop.time()  # a whole period late: resync instead of racing to catch up
            await asyncio.sleep(max(delay, 0.0))
            now = loop.time()
            waiters, self._waiters = self._waiters, []
            for future in waiters:
                if not future.done():
                    future.set_result(now)


_tickers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Ticker] = weakref.WeakKeyDictionary()


def shared_ticker() -> Ticker:
    """Return the running loop's ticker, shared by every call dialled on it."""
    loop = asyncio.get_running_loop()
    ticker = _tickers.get(loop)
    if ticker is None:
        ticker = _tickers[loop] = Ticker()
    return ticker


# --- The call -----------------------------------------------------------------------------------


class CallError(Exception):
    """The call could not be placed or ended abnormally."""


@dataclass
class CallReport:
    """What one simulated call saw; filled in live and final when `dial` returns."""

    call_sid: str
    stream_sid: str
    stream_url: str = ""
    http_status: int | None = None
    frames_sent: int = 0
    dtmf_sent: int = 0
    frames_received: int = 0
    frames_played: int = 0
    frames_cleared: int = 0
    jitter_p50_ms: float = 0.0
    jitter_p99_ms: float = 0.0
    jitter_max_ms: float = 0.0
    marks_received: int = 0
    marks_echoed: int = 0
    echoed_marks: list[str] = field(default_factory=list)
    clears_received: int = 0
    # time.perf_counter() of each clear received (CLOCK_MONOTONIC: comparable across processes)
    clear_at: list[float] = field(default_factory=list)
    bad_messages: int = 0  # binary frames, bad JSON, wrong streamSid, unknown events
    first_media_ms: float | None = None  # from `start` sent to the first media received
    send_late_max_ms: float = 0.0  # worst lateness of our own sends: is the client keeping up?
    duration_s: float = 0.0
    close_code: int | None = None
    close_reason: str = ""
    closed_by: str = ""  # "server" or "caller"
    error: str | None = None
    # stream status callback answers by event: an HTTP status, or why the POST failed
    status_callbacks: dict[str, int | str] = field(default_factory=dict)
    received_audio: bytes = field(default=b"", repr=False)

    @property
    def ok(self) -> bool:
        """Whether the call connected, streamed and closed cleanly."""
        return self.error is None and self.close_code in CLEAN_CLOSE_CODES

    def raise_for_error(self) -> None:
        """Raise `CallError` if the call failed."""
        if not self.ok:
            raise CallError(self.error or f"WebSocket closed with code {self.close_code}")

    def summary(self) -> str:
        """Describe the call in one line."""
        status = "ok" if self.ok else f"FAILED ({self.error or f'close {self.close_code}'})"
        first = "-" if self.first_media_ms is None else f"{self.first_media_ms:.0f}"
        return (
            f"{self.call_sid} {status} sent={self.frames_sent} recv={self.frames_received} "
            f"played={self.frames_played} jitter_ms p50/p99/max="
            f"{self.jitter_p50_ms:.1f}/{self.jitter_p99_ms:.1f}/{self.jitter_max_ms:.1f} "
            f"marks={self.marks_echoed}/{self.marks_received} clears={self.clears_received} "
            f"first_audio_ms={first} close={self.close_code}({self.closed_by}) "
            f"dur={self.duration_s:.1f}s"
        )


ProgressCallback = Callable[[CallReport], None]


@dataclass
class _Call:
    """Per-call state shared by the sending and the receiving coroutine."""

    report: CallReport
    playback: TwilioPlayback
    save_received: bool
    rx: IntervalHistogram = field(default_factory=IntervalHistogram)
    outbox: list[str] = field(default_factory=list)  # marks to echo on the next tick
    received: list[bytes] = field(default_factory=list)
    start_sent_at: float = 0.0


async def dial(
    base_url: str,
    *,
    auth_token: str,
    audio: bytes = b"",
    lead_silence_s: float = 0.0,
    tail_silence_s: float = 1.5,
    call_sid: str | None = None,
    account_sid: str = DEFAULT_ACCOUNT_SID,
    from_number: str = DEFAULT_FROM,
    to_number: str = DEFAULT_TO,
    dtmf: Sequence[tuple[float, str]] = (),
    save_received: bool = False,
    on_progress: ProgressCallback | None = None,
    realtime: bool = True,
    speed: float = 1.0,
    close_wait_s: float = 2.0,
    timeout_s: float = 10.0,
    ticker: Ticker | None = None,
) -> CallReport:
    """Place one call like Twilio: signed webhook, then the media stream; never raises on failure.

    `audio` (8 kHz mu-law) is spoken after `lead_silence_s` of silence and followed by
    `tail_silence_s`, as a phone keeps streaming while its user listens. `speed` > 1 sends
    faster than real time; `realtime=False` sends everything at once. Playback of what the
    server sends always runs at real time. `dtmf` is (seconds into the stream, digit) pairs.
    """
    if speed <= 0:
        raise ValueError("speed must be positive")
    loop = asyncio.get_running_loop()
    started = loop.time()
    report = CallReport(call_sid=call_sid or new_sid("CA"), stream_sid=new_sid("MZ"))
    validator = RequestValidator(auth_token)
    voice_params = {
        "AccountSid": account_sid,
        "ApiVersion": "2010-04-01",
        "CallSid": report.call_sid,
        "CallStatus": "ringing",
        "Called": to_number,
        "Caller": from_number,
        "Direction": "inbound",
        "From": from_number,
        "To": to_number,
    }
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:
            voice_url = base_url.rstrip("/") + VOICE_PATH
            status, body = await _post_signed(http, validator, voice_url, voice_params)
            report.http_status = status
            if status != 200:
                raise CallError(f"voice webhook answered HTTP {status}: {body[:200]!r}")
            twiml = parse_connect_stream(body)
            report.stream_url = twiml.url
            callbacks = _StatusCallbacks(
                http, validator, twiml.status_callback, report, account_sid
            )
            try:
                async with connect(
                    twiml.url,
                    additional_headers={
                        SIGNATURE_HEADER: validator.compute_signature(twiml.url, {})
                    },
                    user_agent_header=USER_AGENT,
                    compression=None,  # Twilio does not negotiate permessage-deflate
                    proxy=None,  # Twilio reaches the server directly; ignore *_proxy variables
                    open_timeout=timeout_s,
                    ping_interval=None,  # 50 messages a second already show the line is alive
                    close_timeout=max(close_wait_s, 0.1),
                ) as ws:
                    callbacks.post("stream-started")
                    call = _Call(report, TwilioPlayback(loop.time), save_received)
                    try:
                        await _stream(
                            ws,
                            call,
                            loop=loop,
                            ticker=ticker or shared_ticker(),
                            frames=_frame_plan(audio, lead_silence_s, tail_silence_s),
                            dtmf=dtmf,
                            account_sid=account_sid,
                            custom_parameters=twiml.parameters,
                            speed=speed if realtime else math.inf,
                            close_wait_s=close_wait_s,
                            on_progress=on_progress,
                        )
                    finally:
                        _finish(call)
                report.close_code = ws.close_code
                report.close_reason = ws.close_reason or ""
                callbacks.post("stream-stopped")
            finally:
                await callbacks.wait()
        if report.close_code not in CLEAN_CLOSE_CODES:
            report.error = f"WebSocket closed abnormally: {report.close_code} {report.close_reason}"
    except CallError as exc:
        report.error = str(exc)
    except InvalidStatus as exc:
        report.error = f"WebSocket refused: HTTP {exc.response.status_code}"
    except (TimeoutError, OSError, WebSocketException, aiohttp.ClientError) as exc:
        report.error = f"{type(exc).__name__}: {exc}"
    finally:
        report.duration_s = loop.time() - started
    return report


async def _post_signed(
    http: aiohttp.ClientSession, validator: RequestValidator, url: str, params: dict[str, str]
) -> tuple[int, str]:
    """POST form parameters signed as Twilio signs its webhooks; return status and body."""
    headers = {SIGNATURE_HEADER: validator.compute_signature(url, params)}
    async with http.post(url, data=params, headers=headers, allow_redirects=False) as response:
        return response.status, await response.text()


class _StatusCallbacks:
    """The stream status callbacks Twilio POSTs (stream-started, stream-stopped)."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        validator: RequestValidator,
        url: str,
        report: CallReport,
        account_sid: str,
    ) -> None:
        self._http, self._validator, self._url = http, validator, url
        self._report, self._account_sid = report, account_sid
        self._tasks: list[asyncio.Task[None]] = []

    def post(self, event: str) -> None:
        """Send one callback in the background (Twilio does not wait for it either)."""
        if self._url:
            self._tasks.append(
                asyncio.get_running_loop().create_task(
                    self._post(event), name=f"caller-status-{event}-{self._report.call_sid}"
                )
            )

    async def wait(self) -> None:
        """Wait for every callback sent so far."""
        await asyncio.gather(*self._tasks)

    async def _post(self, event: str) -> None:
        report = self._report
        params = {
            "AccountSid": self._account_sid,
            "CallSid": report.call_sid,
            "StreamSid": report.stream_sid,
            "StreamName": report.stream_sid,
            "StreamEvent": event,
            "Timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        try:
            status, _body = await _post_signed(self._http, self._validator, self._url, params)
        except (TimeoutError, OSError, aiohttp.ClientError) as exc:
            report.status_callbacks[event] = f"{type(exc).__name__}: {exc}"
        else:
            report.status_callbacks[event] = status


async def dial_many(
    n: int,
    base_url: str,
    *,
    ramp_s: float = 0.0,
    **kwargs: Any,
) -> list[CallReport]:
    """Place `n` calls at once (starts spread over `ramp_s`), sharing one ticker; keep order."""
    if "call_sid" in kwargs:
        raise TypeError("dial_many gives each call its own call_sid")
    ticker = kwargs.pop("ticker", None) or shared_ticker()

    async def one(index: int) -> CallReport:
        if ramp_s > 0 and n > 1:
            await asyncio.sleep(ramp_s * index / n)
        return await dial(base_url, ticker=ticker, **kwargs)

    return list(await asyncio.gather(*(one(i) for i in range(n))))


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a caller coroutine on uvloop when installed (a quarter less CPU), else on asyncio."""
    try:
        import uvloop  # shipped with uvicorn[standard]; optional here
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _frame_plan(audio: bytes, lead_s: float, tail_s: float) -> list[str]:
    """Return the base64 payload of every frame the caller will send, silence included."""
    lead = [_SILENCE_B64] * round(lead_s / FRAME_S)
    tail = [_SILENCE_B64] * round(tail_s / FRAME_S)
    return [*lead, *encode_frames(audio), *tail]


class _Sender:
    """The one place a call sends from: numbers every message in order."""

    __slots__ = ("_send", "call", "seq")

    def __init__(self, ws: ClientConnection, call: _Call) -> None:
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
            _MEDIA_TEMPLATE
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


async def _stream(
    ws: ClientConnection,
    call: _Call,
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
    out = _Sender(ws, call)
    # (index of the frame the key press goes before, digit), in time order
    pending_dtmf = deque(sorted((max(0, math.ceil(t / FRAME_S - 1e-9)), d) for t, d in dtmf))
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
        receiver = loop.create_task(_receive(ws, call, loop), name=f"caller-rx-{report.call_sid}")
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
                    if (k + 1) % _BURST_YIELD == 0 and k + 1 < due:
                        await asyncio.sleep(0)  # catching up: let other calls and our receiver run
                call.outbox.extend(call.playback.advance(now))
                if call.outbox:
                    marks, call.outbox = call.outbox, []
                    await out.echo_marks(marks)
                if on_progress is not None and now >= next_progress:
                    next_progress += 1.0
                    _refresh(call)
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


async def _receive(ws: ClientConnection, call: _Call, loop: asyncio.AbstractEventLoop) -> None:
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


def _refresh(call: _Call) -> None:
    """Copy the live counters into the report."""
    report, playback = call.report, call.playback
    report.frames_received = playback.frames_received
    report.frames_played = playback.frames_played
    report.frames_cleared = playback.frames_cleared


def _finish(call: _Call) -> None:
    """Fill in the figures that are computed once, at the end."""
    _refresh(call)
    report = call.report
    report.jitter_p50_ms, report.jitter_p99_ms, report.jitter_max_ms = call.rx.summary()
    if call.save_received:
        report.received_audio = b"".join(call.received)


__all__ = [
    "CallError",
    "CallReport",
    "ConnectStream",
    "Ticker",
    "TwilioPlayback",
    "connected_message",
    "dial",
    "dial_many",
    "dtmf_message",
    "encode_frames",
    "frames_due",
    "mark_message",
    "media_message",
    "new_sid",
    "parse_connect_stream",
    "read_wav_as_ulaw",
    "run",
    "shared_ticker",
    "speech_audio",
    "start_message",
    "stop_message",
    "write_ulaw_wav",
]
