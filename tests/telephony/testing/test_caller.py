"""The simulated Twilio caller: playback model, message shapes, WAV I/O, and `dial` end to end."""

from __future__ import annotations

import asyncio
import audioop
import base64
import contextlib
import importlib.util
import io
import itertools
import json
import math
import statistics
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from telephony.media.audio import FRAME_BYTES, SILENCE_FRAME, ulaw_to_pcm16
from telephony.testing.caller import (
    CallError,
    CallReport,
    Ticker,
    TwilioPlayback,
    connected_message,
    dial,
    dial_many,
    dtmf_message,
    encode_frames,
    frames_due,
    mark_message,
    media_message,
    parse_connect_stream,
    read_wav_as_ulaw,
    start_message,
    stop_message,
    write_ulaw_wav,
)
from tests.helpers.clock import FakeClock

TOKEN = "test-auth-token"
# Mu-law codes 1..120: distinct per position, and none of them is a zero code (0x7F/0xFF),
# so the audio survives a PCM round trip byte for byte.
AUDIO = bytes(1 + i % 120 for i in range(8000))  # 1 s, exactly 50 frames


def frame(code: int) -> bytes:
    """Return one 20 ms frame of a single mu-law code."""
    return bytes([code]) * FRAME_BYTES


# --- The playback model -----------------------------------------------------------------------


def test_mark_is_echoed_only_after_the_audio_before_it_has_played() -> None:
    clock = FakeClock(0.0)
    playback = TwilioPlayback(clock)
    for code in range(5):  # a burst: 100 ms of audio arriving at once
        playback.receive_media(frame(code))
    playback.receive_mark("end")

    assert playback.advance(0.0) == []
    assert playback.advance(0.05) == []
    assert playback.frames_played == 2
    assert playback.advance(0.099) == []
    assert playback.advance(0.1) == ["end"]
    assert playback.frames_played == 5
    assert playback.buffered_frames == 0
    assert playback.advance(1.0) == []  # echoed once


def test_mark_with_nothing_before_it_is_due_at_once() -> None:
    playback = TwilioPlayback(FakeClock(0.0))
    playback.receive_mark("empty")
    assert playback.advance(0.0) == ["empty"]


def test_marks_wait_in_line_behind_their_own_audio() -> None:
    clock = FakeClock(0.0)
    playback = TwilioPlayback(clock)
    playback.receive_media(frame(1))
    playback.receive_mark("a")
    playback.receive_media(frame(2))
    playback.receive_media(frame(3))
    playback.receive_mark("b")

    assert playback.advance(0.02) == ["a"]
    assert playback.pending_marks == ["b"]
    assert playback.advance(0.059) == []
    assert playback.advance(0.06) == ["b"]


def test_clear_drops_buffered_audio_and_releases_every_pending_mark() -> None:
    clock = FakeClock(0.0)
    playback = TwilioPlayback(clock)
    for _ in range(10):
        playback.receive_media(frame(9))
    playback.receive_mark("half")
    for _ in range(10):
        playback.receive_media(frame(9))
    playback.receive_mark("end")
    assert playback.advance(0.04) == []

    clock.now = 0.04
    assert playback.receive_clear() == ["half", "end"]
    assert playback.frames_played == 2
    assert playback.frames_cleared == 18
    assert playback.buffered_frames == 0
    assert playback.advance(10.0) == []  # nothing left to play or echo


def test_audio_after_an_underrun_starts_when_it_arrives() -> None:
    clock = FakeClock(0.0)
    playback = TwilioPlayback(clock)
    playback.receive_media(frame(1))
    assert playback.advance(0.02) == []
    clock.now = 1.0  # the server went quiet for almost a second
    playback.receive_media(frame(2))
    playback.receive_mark("late")
    assert playback.advance(1.019) == []
    assert playback.advance(1.02) == ["late"]


def test_a_payload_longer_than_a_frame_plays_for_its_own_length() -> None:
    clock = FakeClock(0.0)
    playback = TwilioPlayback(clock)
    playback.receive_media(bytes(FRAME_BYTES * 3))  # 60 ms in one message
    playback.receive_mark("m")
    assert playback.advance(0.05) == []
    assert playback.advance(0.06) == ["m"]
    assert math.isclose(playback.played_s, 0.06)


def test_playback_counts_the_deepest_buffer() -> None:
    playback = TwilioPlayback(FakeClock(0.0))
    for _ in range(7):
        playback.receive_media(frame(1))
    playback.advance(0.1)
    playback.receive_media(frame(1))
    assert playback.max_buffered == 7
    assert playback.frames_received == 8


# --- Pacing arithmetic and statistics -----------------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed", "speed", "expected"),
    [
        (-0.001, 1.0, 0),
        (0.0, 1.0, 1),
        (0.009, 1.0, 1),  # a tick half a frame early does not send the next frame
        (0.019, 1.0, 2),  # a tick a millisecond early does
        (0.021, 1.0, 2),  # a tick a millisecond late does not send two
        (0.2, 1.0, 11),
        (100.0, 1.0, 50),  # never past the end
        (0.02, 2.0, 3),
        (0.02, math.inf, 50),
    ],
)
def test_frames_due(elapsed: float, speed: float, expected: int) -> None:
    assert frames_due(elapsed, speed=speed, total=50) == expected


async def test_ticker_wakes_all_waiters_on_one_tick_and_stops_when_unused() -> None:
    ticker = Ticker(period_s=0.01)
    with ticker.subscribed():
        first, second = await asyncio.gather(ticker.wait(), ticker.wait())
        assert first == second  # one timer, both woken by it
        doomed = asyncio.create_task(ticker.wait())
        survivor = asyncio.create_task(ticker.wait())
        await asyncio.sleep(0)
        doomed.cancel()
        assert await survivor > first  # cancelling one waiter leaves the others alone
    await asyncio.sleep(0.03)
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "caller-ticker"]


# --- Message shapes ---------------------------------------------------------------------------


def test_messages_parse_back_to_twilio_shapes() -> None:
    assert json.loads(connected_message()) == {
        "event": "connected",
        "protocol": "Call",
        "version": "1.0.0",
    }
    start = json.loads(
        start_message(
            sequence_number=1,
            account_sid="AC1",
            call_sid="CA1",
            stream_sid="MZ1",
            custom_parameters={"token": "t"},
        )
    )
    assert start == {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": "MZ1",
        "start": {
            "accountSid": "AC1",
            "streamSid": "MZ1",
            "callSid": "CA1",
            "tracks": ["inbound"],
            "customParameters": {"token": "t"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
    }
    payload = base64.b64encode(frame(7)).decode()
    media = json.loads(
        media_message(
            sequence_number=3, chunk=2, timestamp_ms=20, payload_b64=payload, stream_sid="MZ1"
        )
    )
    assert media == {
        "event": "media",
        "sequenceNumber": "3",
        "media": {"track": "inbound", "chunk": "2", "timestamp": "20", "payload": payload},
        "streamSid": "MZ1",
    }
    assert json.loads(mark_message(sequence_number=4, name="g", stream_sid="MZ1")) == {
        "event": "mark",
        "sequenceNumber": "4",
        "streamSid": "MZ1",
        "mark": {"name": "g"},
    }
    assert json.loads(dtmf_message(sequence_number=5, digit="#", stream_sid="MZ1")) == {
        "event": "dtmf",
        "sequenceNumber": "5",
        "streamSid": "MZ1",
        "dtmf": {"track": "inbound_track", "digit": "#"},
    }
    assert json.loads(
        stop_message(sequence_number=6, account_sid="AC1", call_sid="CA1", stream_sid="MZ1")
    ) == {
        "event": "stop",
        "sequenceNumber": "6",
        "streamSid": "MZ1",
        "stop": {"accountSid": "AC1", "callSid": "CA1"},
    }


def test_encode_frames_pads_the_last_frame_and_is_shared() -> None:
    clip = bytes(range(1, 101)) * 4  # 400 bytes: two frames and a half
    encoded = encode_frames(clip)
    frames = [base64.b64decode(p) for p in encoded]
    assert [len(f) for f in frames] == [FRAME_BYTES] * 3
    assert b"".join(frames)[:400] == clip
    assert frames[2][80:] == SILENCE_FRAME[80:]
    assert encode_frames(clip) is encoded


def test_parse_connect_stream_reads_url_and_parameters() -> None:
    twiml = (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
        '<Stream url="wss://example.test/twilio/stream/" '
        'statusCallback="https://example.test/twilio/status/">'
        '<Parameter name="token" value="abc"/><Parameter name="lang" value="he"/>'
        "</Stream></Connect></Response>"
    )
    stream = parse_connect_stream(twiml)
    assert stream.url == "wss://example.test/twilio/stream/"
    assert stream.parameters == {"token": "abc", "lang": "he"}
    assert stream.status_callback == "https://example.test/twilio/status/"
    bare = parse_connect_stream('<Response><Connect><Stream url="ws://h/s/"/></Connect></Response>')
    assert bare == ("ws://h/s/", {}, "")
    with pytest.raises(CallError, match="no <Connect><Stream"):
        parse_connect_stream("<Response><Say>hi</Say></Response>")
    with pytest.raises(CallError, match="not XML"):
        parse_connect_stream("Internal Server Error")


# --- WAV I/O ----------------------------------------------------------------------------------


def test_wav_round_trip_keeps_every_byte(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    write_ulaw_wav(path, AUDIO)
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.getnframes() == len(AUDIO)
    assert read_wav_as_ulaw(path) == AUDIO


def _tone_pcm16(rate: int, seconds: float, hz: float = 440.0, amplitude: int = 8000) -> bytes:
    n = int(rate * seconds)
    samples = (int(amplitude * math.sin(2 * math.pi * hz * i / rate)) for i in range(n))
    return b"".join(s.to_bytes(2, "little", signed=True) for s in samples)


def test_read_wav_converts_stereo_16khz_to_8khz_mono(tmp_path: Path) -> None:
    mono = _tone_pcm16(16000, 0.5)
    stereo = audioop.tostereo(mono, 2, 1.0, 1.0)
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(stereo)

    ulaw = read_wav_as_ulaw(path)
    assert abs(len(ulaw) - 4000) <= 2  # half a second at 8 kHz
    pcm = ulaw_to_pcm16(ulaw)
    expected_rms = 8000 / math.sqrt(2)
    assert audioop.rms(pcm, 2) == pytest.approx(expected_rms, rel=0.1)


def test_read_wav_accepts_unsigned_8_bit(tmp_path: Path) -> None:
    pcm8_signed = audioop.lin2lin(_tone_pcm16(8000, 0.25), 2, 1)
    path = tmp_path / "eight.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(1)
        wav.setframerate(8000)
        wav.writeframes(audioop.bias(pcm8_signed, 1, 128))  # WAV stores 8-bit as unsigned

    pcm = ulaw_to_pcm16(read_wav_as_ulaw(path))
    assert len(pcm) == 2 * 2000
    # Read as signed by mistake, the +128 bias would show up as a large DC offset.
    assert abs(audioop.avg(pcm, 2)) < 300
    assert audioop.rms(pcm, 2) == pytest.approx(8000 / math.sqrt(2), rel=0.1)


# --- dial() against a fake Twilio-side server ---------------------------------------------------

Script = Callable[["FakeServer", ServerConnection], Awaitable[None]]


class FakeServer:
    """Our server as the caller sees it: a signed voice webhook and a stream WebSocket.

    It checks both signatures the way the real one must, records every message the caller
    sends with its arrival time, runs a `script` once `start` arrives, and closes after `stop`.
    """

    def __init__(
        self,
        *,
        script: Script | None = None,
        reject_ws: bool = False,
        close_after_stop: bool = True,
        twiml_stream_url: str | None = None,
    ) -> None:
        self.twiml_stream_url = twiml_stream_url
        self.validator = RequestValidator(TOKEN)
        self.script = script
        self.reject_ws = reject_ws
        self.close_after_stop = close_after_stop
        self.forms: list[dict[str, str]] = []
        self.status_forms: list[dict[str, str]] = []
        self.upgrade_headers: list[Headers] = []
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.echo_times: dict[str, float] = {}
        self.echo_events: dict[str, asyncio.Event] = {}
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.sids: dict[ServerConnection, str] = {}  # each connection's streamSid
        self.http_port = 0
        self.ws_port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def stream_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/twilio/stream/"

    async def __aenter__(self) -> FakeServer:
        self._ws_server = await serve(
            self._handle_stream, "127.0.0.1", 0, process_request=self._check_upgrade
        )
        self.ws_port = self._ws_server.sockets[0].getsockname()[1]
        app = web.Application()
        app.router.add_post("/twilio/voice/", self._voice)
        app.router.add_post("/twilio/status/", self._status)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.http_port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._ws_server.close()
        await self._ws_server.wait_closed()
        await self._runner.cleanup()

    async def _voice(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.forms.append(form)
        signature = request.headers.get("X-Twilio-Signature", "")
        if not self.validator.validate(f"{self.base_url}/twilio/voice/", form, signature):
            return web.Response(status=403, text="bad signature")
        url = self.twiml_stream_url or self.stream_url
        twiml = (
            f'<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
            f'<Stream url="{url}" statusCallback="{self.base_url}/twilio/status/">'
            f'<Parameter name="token" value="tok-{form["CallSid"]}"/>'
            f"</Stream></Connect></Response>"
        )
        return web.Response(text=twiml, content_type="text/xml")

    async def _status(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        if not self.validator.validate(f"{self.base_url}/twilio/status/", form, signature):
            return web.Response(status=403, text="bad signature")
        self.status_forms.append(form)
        return web.Response(status=204)

    def _check_upgrade(self, connection: ServerConnection, request: Request) -> Response | None:
        self.upgrade_headers.append(request.headers)
        signature = request.headers.get("X-Twilio-Signature", "")
        if self.reject_ws or not self.validator.validate(self.stream_url, {}, signature):
            return connection.respond(403, "bad signature\n")
        return None

    async def _handle_stream(self, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        script_task: asyncio.Task[None] | None = None
        async for raw in ws:
            msg = json.loads(raw)
            self.messages.append((loop.time(), msg))
            if msg["event"] == "start":
                self.sids[ws] = msg["streamSid"]
                self.started.set()
                if self.script is not None:
                    script_task = asyncio.create_task(self.script(self, ws))
            elif msg["event"] == "mark":
                name = msg["mark"]["name"]
                self.echo_times[name] = loop.time()
                self.echo_events.setdefault(name, asyncio.Event()).set()
            elif msg["event"] == "stop":
                self.stopped.set()
                if self.close_after_stop:
                    break
        if script_task is not None:
            script_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await script_task

    async def send_media(self, ws: ServerConnection, payload: bytes) -> None:
        await ws.send(
            json.dumps(
                {
                    "event": "media",
                    "streamSid": self.sids[ws],
                    "media": {"payload": base64.b64encode(payload).decode()},
                }
            )
        )

    async def send_mark(self, ws: ServerConnection, name: str) -> float:
        self.echo_events.setdefault(name, asyncio.Event())
        await ws.send(
            json.dumps({"event": "mark", "streamSid": self.sids[ws], "mark": {"name": name}})
        )
        return asyncio.get_running_loop().time()

    async def echo(self, name: str, within_s: float = 2.0) -> float:
        event = self.echo_events.setdefault(name, asyncio.Event())
        await asyncio.wait_for(event.wait(), within_s)
        return self.echo_times[name]

    def sent(self, event: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.messages if m["event"] == event]


async def test_dial_streams_like_twilio_and_plays_back_at_real_time() -> None:
    timings: dict[str, float] = {}
    progress: list[int] = []

    async def script(server: FakeServer, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        timings["burst"] = loop.time()
        for code in range(10):  # 200 ms of audio at once: the caller must play it at 20 ms a frame
            await server.send_media(ws, frame(code))
        await server.send_mark(ws, "m1")
        timings["m1_echo"] = await server.echo("m1")
        for _ in range(25):  # 500 ms buffered, then cut short by clear
            await server.send_media(ws, frame(50))
        await server.send_mark(ws, "m2")
        await asyncio.sleep(0.1)
        await ws.send(json.dumps({"event": "clear", "streamSid": server.sids[ws]}))
        timings["clear"] = loop.time()
        timings["m2_echo"] = await server.echo("m2")

    async with FakeServer(script=script) as server:
        report = await dial(
            server.base_url,
            auth_token=TOKEN,
            audio=AUDIO,
            lead_silence_s=0.1,
            tail_silence_s=0.5,
            dtmf=[(0.5, "7")],
            save_received=True,
            on_progress=lambda r: progress.append(r.frames_sent),
        )

    report.raise_for_error()
    assert report.http_status == 200
    assert report.stream_url == server.stream_url
    assert report.closed_by == "server"
    assert report.close_code == 1000

    # The webhook: Twilio's form fields, signed.
    (form,) = server.forms
    assert form["CallSid"] == report.call_sid
    assert form["CallStatus"] == "ringing"
    assert {"AccountSid", "From", "To"} <= form.keys()
    # The upgrade: signed, uncompressed.
    (headers,) = server.upgrade_headers
    assert "Sec-WebSocket-Extensions" not in headers

    # connected, start, then media with one dtmf among it, then stop.
    events = [m["event"] for _, m in server.messages]
    assert events[:2] == ["connected", "start"]
    assert events[-1] == "stop"
    start = server.messages[1][1]
    assert start["sequenceNumber"] == "1"
    assert start["streamSid"] == start["start"]["streamSid"] == report.stream_sid
    assert start["start"]["callSid"] == report.call_sid
    assert start["start"]["customParameters"] == {"token": f"tok-{report.call_sid}"}
    assert start["start"]["mediaFormat"] == {
        "encoding": "audio/x-mulaw",
        "sampleRate": 8000,
        "channels": 1,
    }
    numbered = [m for _, m in server.messages[1:]]
    assert [int(m["sequenceNumber"]) for m in numbered] == list(range(1, len(numbered) + 1))
    assert all(m["streamSid"] == report.stream_sid for m in numbered)

    media = server.sent("media")
    assert len(media) == report.frames_sent == 5 + 50 + 25
    assert [m["media"]["chunk"] for _, m in media] == [str(i) for i in range(1, 81)]
    assert [m["media"]["timestamp"] for _, m in media] == [str(20 * i) for i in range(80)]
    assert all(m["media"]["track"] == "inbound" for _, m in media)
    payloads = [base64.b64decode(m["media"]["payload"]) for _, m in media]
    assert all(len(p) == FRAME_BYTES for p in payloads)
    assert b"".join(payloads) == SILENCE_FRAME * 5 + AUDIO + SILENCE_FRAME * 25

    (dtmf,) = [m for _, m in server.messages if m["event"] == "dtmf"]
    assert dtmf["dtmf"] == {"track": "inbound_track", "digit": "7"}
    after_dtmf = events.index("dtmf") + 1
    assert server.messages[after_dtmf][1]["media"]["timestamp"] == "500"

    # Stream status callbacks, signed, before and after.
    assert report.status_callbacks == {"stream-started": 204, "stream-stopped": 204}
    started, stopped = sorted(
        server.status_forms, key=lambda f: f["StreamEvent"] != "stream-started"
    )
    assert started["StreamEvent"] == "stream-started"
    assert stopped["StreamEvent"] == "stream-stopped"
    assert started["StreamSid"] == report.stream_sid
    assert started["CallSid"] == report.call_sid

    stop = server.messages[-1][1]
    assert stop["stop"] == {"accountSid": start["start"]["accountSid"], "callSid": report.call_sid}

    # Real-time pacing: 20 ms apart, 1.58 s from the first frame to the last.
    arrivals = [t for t, _ in media]
    gaps_ms = [(b - a) * 1000 for a, b in itertools.pairwise(arrivals)]
    assert 17 <= statistics.median(gaps_ms) <= 23
    assert (arrivals[-1] - arrivals[0]) == pytest.approx(79 * 0.02, abs=0.1)

    # m1 waited for its 200 ms of audio; m2 was released by clear, long before the 400 ms
    # of its audio still buffered would have played.
    assert 0.19 <= timings["m1_echo"] - timings["burst"] <= 0.35
    assert timings["m2_echo"] - timings["clear"] < 0.2
    assert report.echoed_marks == ["m1", "m2"]
    assert report.marks_received == report.marks_echoed == 2
    assert report.clears_received == 1
    assert report.frames_received == 35
    assert report.frames_cleared > 15
    assert report.frames_played + report.frames_cleared == 35
    assert report.received_audio == b"".join([frame(c) for c in range(10)] + [frame(50)] * 25)
    assert report.first_media_ms is not None
    assert 0 <= report.first_media_ms < 100
    assert report.bad_messages == 0
    assert report.dtmf_sent == 1
    assert 1.5 < report.duration_s < 3.0

    # A progress report when the stream starts, then one a second.
    assert len(progress) == 2
    assert progress[0] == 0
    assert 40 <= progress[1] <= 60


async def test_dial_measures_jitter_of_what_it_receives() -> None:
    async def script(server: FakeServer, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        for i in range(20):
            if i % 5 == 4:
                deadline += 0.04  # a 60 ms gap before every fifth frame, 20 ms otherwise
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            await server.send_media(ws, frame(1))
            deadline += 0.02

    async with FakeServer(script=script) as server:
        report = await dial(server.base_url, auth_token=TOKEN, tail_silence_s=0.6)

    assert report.ok
    assert report.frames_received == 20
    # Most gaps are on time; the three long ones stand out.
    assert report.jitter_p50_ms < 10
    assert 30 <= report.jitter_max_ms <= 100


async def test_speed_sends_faster_than_real_time() -> None:
    async with FakeServer() as server:
        report = await dial(
            server.base_url, auth_token=TOKEN, audio=AUDIO, tail_silence_s=0.0, speed=4.0
        )
    assert report.ok
    arrivals = [t for t, _ in server.sent("media")]
    assert len(arrivals) == 50
    assert 0.15 < arrivals[-1] - arrivals[0] < 0.45  # 0.98 s of audio, paced at 4x


async def test_without_realtime_everything_goes_at_once() -> None:
    async with FakeServer() as server:
        report = await dial(
            server.base_url, auth_token=TOKEN, audio=AUDIO * 5, tail_silence_s=1.0, realtime=False
        )
    assert report.ok
    arrivals = [t for t, _ in server.sent("media")]
    assert len(arrivals) == 300
    assert arrivals[-1] - arrivals[0] < 0.5  # 6 s of audio


async def test_dial_many_places_separate_calls() -> None:
    async with FakeServer() as server:
        reports = await dial_many(3, server.base_url, auth_token=TOKEN, tail_silence_s=0.2)
    assert all(r.ok for r in reports)
    assert len({r.call_sid for r in reports}) == 3
    assert len({f["CallSid"] for f in server.forms}) == 3
    assert [r.frames_sent for r in reports] == [10, 10, 10]
    with pytest.raises(TypeError):
        await dial_many(2, server.base_url, auth_token=TOKEN, call_sid="CA1")


async def test_a_wrong_auth_token_fails_at_the_webhook() -> None:
    async with FakeServer() as server:
        report = await dial(server.base_url, auth_token="not-the-token")
    assert not report.ok
    assert report.http_status == 403
    assert "HTTP 403" in (report.error or "")
    assert report.frames_sent == 0
    with pytest.raises(CallError, match="403"):
        report.raise_for_error()


async def test_a_refused_websocket_is_a_failure() -> None:
    async with FakeServer(reject_ws=True) as server:
        report = await dial(server.base_url, auth_token=TOKEN)
    assert not report.ok
    assert report.error == "WebSocket refused: HTTP 403"


async def test_a_stream_url_that_is_not_a_websocket_is_a_failure() -> None:
    async with FakeServer(twiml_stream_url="https://example.invalid/stream") as server:
        report = await dial(server.base_url, auth_token=TOKEN)
    assert not report.ok
    assert (report.error or "").startswith("InvalidURI")


async def test_nothing_listening_is_a_failure() -> None:
    async with FakeServer() as server:
        url = server.base_url
    report = await dial(url, auth_token=TOKEN, timeout_s=2)
    assert not report.ok
    assert report.error


@pytest.mark.parametrize(("code", "ok"), [(1011, False), (1000, True)])
async def test_the_server_hanging_up_ends_the_call(code: int, ok: bool) -> None:
    async def script(server: FakeServer, ws: ServerConnection) -> None:
        await asyncio.sleep(0.2)
        await ws.close(code, "bye")

    async with FakeServer(script=script) as server:
        report = await dial(server.base_url, auth_token=TOKEN, audio=AUDIO)
    assert report.ok is ok
    assert report.close_code == code
    assert report.closed_by == "server"
    assert 5 <= report.frames_sent < 30
    assert not server.stopped.is_set()  # no stop on a line that is already down
    assert report.duration_s < 1.0


async def test_the_caller_closes_when_the_server_lingers_after_stop() -> None:
    async with FakeServer(close_after_stop=False) as server:
        report = await dial(server.base_url, auth_token=TOKEN, tail_silence_s=0.1, close_wait_s=0.2)
    assert report.ok
    assert server.stopped.is_set()
    assert report.closed_by == "caller"
    assert report.close_code == 1000


async def test_the_caller_counts_what_twilio_would_reject() -> None:
    async def script(server: FakeServer, ws: ServerConnection) -> None:
        await ws.send(b"\x00binary")
        await ws.send("not json")
        await ws.send(json.dumps({"event": "media", "streamSid": "MZwrong", "media": {}}))
        await ws.send(json.dumps({"event": "dance", "streamSid": server.sids[ws]}))

    async with FakeServer(script=script) as server:
        report = await dial(server.base_url, auth_token=TOKEN, tail_silence_s=0.3)
    assert report.ok
    assert report.bad_messages == 4
    assert report.frames_received == 0


def test_summary_names_the_failure() -> None:
    report = CallReport(call_sid="CA1", stream_sid="MZ1", error="voice webhook answered HTTP 500")
    assert "FAILED (voice webhook answered HTTP 500)" in report.summary()
    assert not report.ok


# --- manage.py simulate_call ----------------------------------------------------------------------


def test_parse_dtmf() -> None:
    from telephony.management.commands.simulate_call import parse_dtmf

    assert parse_dtmf("1.5:1") == (1.5, "1")
    assert parse_dtmf("0:#") == (0.0, "#")
    for bad in ("1.5", "x:1", "1:12", "1:a", "-1:1"):
        with pytest.raises(ValueError, match="SECONDS:DIGIT"):
            parse_dtmf(bad)


async def test_simulate_call_command_reports_and_saves_each_call(tmp_path: Path) -> None:
    from django.core.management import call_command

    async def script(server: FakeServer, ws: ServerConnection) -> None:
        for _ in range(5):
            await server.send_media(ws, frame(33))
        await server.send_mark(ws, "greeting")

    wav_in, wav_out = tmp_path / "say.wav", tmp_path / "heard.wav"
    write_ulaw_wav(wav_in, AUDIO[:1600])
    out = io.StringIO()
    async with FakeServer(script=script) as server:
        # The command runs its own event loop, so it gets a thread; the server stays on ours.
        await asyncio.to_thread(
            call_command,
            "simulate_call",
            "--url",
            server.base_url,
            "--auth-token",
            TOKEN,
            "--wav",
            str(wav_in),
            "--calls",
            "2",
            "--lead-silence",
            "0",
            "--tail-silence",
            "1.2",
            "--dtmf",
            "0.1:5",
            "--save-wav",
            str(wav_out),
            stdout=out,
        )
    text = out.getvalue()
    assert len(server.forms) == 2
    assert len([m for _, m in server.messages if m["event"] == "dtmf"]) == 2
    assert text.count(" ok sent=70 recv=5 ") == 2
    assert "[  1s] calls=2/2" in text
    assert "calls=2 ok=2 failed=0 sent=140 recv=10" in text
    assert "marks=2/2" in text
    for name in ("heard-1.wav", "heard-2.wav"):
        assert read_wav_as_ulaw(tmp_path / name) == frame(33) * 5


async def test_simulate_call_command_fails_when_a_call_fails() -> None:
    from django.core.management import CommandError, call_command

    out = io.StringIO()
    async with FakeServer() as server:
        with pytest.raises(CommandError, match="1 of 1 calls failed"):
            await asyncio.to_thread(
                call_command,
                "simulate_call",
                f"--url={server.base_url}",
                "--auth-token=wrong",
                "--tail-silence=0.1",
                stdout=out,
            )
    assert "FAILED (voice webhook answered HTTP 403" in out.getvalue()


# --- Against the real server --------------------------------------------------------------------


def _server_code_present() -> bool:
    return all(importlib.util.find_spec(m) for m in ("project.asgi", "telephony.urls"))


@pytest.mark.skipif(not _server_code_present(), reason="the server side is not written yet")
async def test_dial_the_real_server(server_factory: Callable[..., Any]) -> None:
    env = {"STT_ENGINE": "none", "TWILIO_AUTH_TOKEN": TOKEN, "GREETING_TEXT": "Hello, welcome."}
    server = server_factory(env=env)
    # Silence while the greeting plays (speech would barge in and clear it), then speech.
    report = await dial(
        server.base_url,
        auth_token=TOKEN,
        audio=AUDIO,
        lead_silence_s=2.0,
        tail_silence_s=0.5,
        save_received=True,
    )
    assert report.ok, f"{report.summary()}\n{server.log_text()}"
    assert report.bad_messages == 0
    assert report.frames_received > 100  # the greeting, then idle audio
    assert report.marks_echoed >= 1  # the greeting ends with a mark
    assert report.status_callbacks == {"stream-started": 204, "stream-stopped": 204}
    assert len(report.received_audio) == report.frames_received * FRAME_BYTES


def test_a_server_that_cannot_start_reports_its_log(server_factory: Callable[..., Any]) -> None:
    from telephony.testing.server_process import ServerError

    with pytest.raises(ServerError, match="no_such_module"):
        server_factory(app="tests.no_such_module:application", migrate=False, start_timeout_s=20)
