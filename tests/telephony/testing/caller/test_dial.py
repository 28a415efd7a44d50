"""`dial` end to end: against a fake of our server on loopback, and against the real one."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import statistics
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection

from telephony.media.audio import FRAME_BYTES, SILENCE_FRAME
from telephony.testing.caller import CallError, dial, dial_many
from tests.helpers.fake_line import AUDIO, TOKEN, FakeServer, frame


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
