"""The stream consumer through channels' WebsocketCommunicator (in-process, real threads)."""

import base64
import json
import threading
import time

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from twilio.request_validator import RequestValidator

from telephony.media.audio import FRAME_BYTES
from telephony.security import signatures, tokens

pytestmark = pytest.mark.django_db(transaction=True)

CALL = "CA" + "c" * 32
STREAM = "MZ" + "d" * 32


@pytest.fixture
def app(settings):
    settings.STT_ENGINE = "none"
    settings.PUBLIC_BASE_URL = "https://line.example.com"
    settings.GREETING_TEXT = "Hello"
    from project.asgi import application

    return application


def signed_headers(url: str | None = None) -> list[tuple[bytes, bytes]]:
    url = url or signatures.stream_url(settings.PUBLIC_BASE_URL)
    signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(url, {})
    return [(b"x-twilio-signature", signature.encode()), (b"host", b"line.example.com")]


def start(call_sid: str = CALL, token: str | None = None, stream_sid: str = STREAM) -> dict:
    if token is None:
        token = tokens.make_stream_token(
            settings.TWILIO_AUTH_TOKEN, call_sid, now=time.time(), ttl_s=60
        )
    return {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": stream_sid,
        "start": {
            "accountSid": "AC1",
            "streamSid": stream_sid,
            "callSid": call_sid,
            "tracks": ["inbound"],
            "customParameters": {"token": token},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
    }


def media(n: int, payload: bytes = b"\xff" * FRAME_BYTES, stream_sid: str = STREAM) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(n + 2),
            "streamSid": stream_sid,
            "media": {
                "track": "inbound",
                "chunk": str(n + 1),
                "timestamp": str(n * 20),
                "payload": base64.b64encode(payload).decode(),
            },
        }
    )


def call_threads(call_sid: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.endswith(call_sid)]


async def receive_until_closed(comm: WebsocketCommunicator, wait_s: float = 5.0) -> list:
    out = []
    while True:
        message = await comm.receive_output(wait_s)
        out.append(message)
        if message["type"] == "websocket.close":
            return out


async def test_unsigned_upgrade_is_refused(app):
    comm = WebsocketCommunicator(app, "/twilio/stream/", headers=[(b"host", b"line.example.com")])
    connected, _ = await comm.connect()
    assert not connected
    comm = WebsocketCommunicator(
        app, "/twilio/stream/", headers=signed_headers("wss://evil/twilio/stream/")
    )
    connected, _ = await comm.connect()
    assert not connected


async def test_signed_upgrade_without_trailing_slash_is_accepted(app):
    url = signatures.stream_url(settings.PUBLIC_BASE_URL).rstrip("/")
    comm = WebsocketCommunicator(app, "/twilio/stream/", headers=signed_headers(url))
    connected, _ = await comm.connect()
    assert connected
    await comm.disconnect()


async def test_a_call_survives_bad_input_and_its_threads_end_with_it(app):
    comm = WebsocketCommunicator(app, "/twilio/stream/", headers=signed_headers())
    assert (await comm.connect())[0]
    await comm.send_to(text_data=media(0))  # media before start: counted, ignored
    await comm.send_to(text_data=json.dumps(start()))
    await comm.send_to(text_data=json.dumps(start()))  # repeated start: counted
    bad = [
        "{not json",
        '{"event": "dance"}',
        json.dumps({"event": "media", "streamSid": STREAM, "media": {"payload": "!!"}}),
        json.dumps({"event": "media", "streamSid": STREAM, "media": {"payload": ""}}),
        media(1, stream_sid="MZother"),
    ]
    for text in bad:
        await comm.send_to(text_data=text)
    await comm.send_to(bytes_data=b"\x00\x01")
    for n in range(50):
        await comm.send_to(text_data=media(n))
    await comm.send_to(text_data=media(50, payload=b"\xff" * 100))  # irregular: re-cut
    await comm.send_to(text_data=media(51, payload=b"\xff" * 220))
    first = json.loads(await comm.receive_from(timeout=2))
    assert first["event"] == "media"
    assert first["streamSid"] == STREAM
    assert len(base64.b64decode(first["media"]["payload"])) == FRAME_BYTES
    assert call_threads(CALL)  # rx-, tx- threads are running
    await comm.send_to(text_data=json.dumps({"event": "stop", "streamSid": STREAM, "stop": {}}))
    messages = await receive_until_closed(comm)
    assert messages[-1]["code"] == 1000
    from calls.models import Call

    call = await Call.objects.aget(call_sid=CALL)
    assert call.frames_in == 52  # 50 + (100 + 220) / 160 bytes re-cut into 2 frames
    assert call.bad_input == {
        "media_before_start": 1,
        "repeated_start": 1,
        "invalid_json": 1,
        "unknown_event": 1,
        "bad_base64": 1,
        "empty_payload": 1,
        "wrong_stream": 1,
        "binary_frame": 1,
        "irregular_frame": 2,
    }
    assert call_threads(CALL) == []


async def test_a_wrong_or_reused_token_closes_the_stream(app):
    comm = WebsocketCommunicator(app, "/twilio/stream/", headers=signed_headers())
    assert (await comm.connect())[0]
    await comm.send_to(text_data=json.dumps(start(token="1.forged")))
    closed = await comm.receive_output(timeout=2)
    assert closed["type"] == "websocket.close"
    assert closed["code"] == 4008  # 1008 (policy) in the range daphne lets an app send
    assert "token" in closed["reason"]

    token = tokens.make_stream_token(settings.TWILIO_AUTH_TOKEN, "CA2", now=time.time(), ttl_s=60)
    first = WebsocketCommunicator(app, "/twilio/stream/", headers=signed_headers())
    assert (await first.connect())[0]
    await first.send_to(text_data=json.dumps(start("CA2", token)))
    await first.receive_from(timeout=2)  # the greeting is flowing: accepted
    again = WebsocketCommunicator(app, "/twilio/stream/", headers=signed_headers())
    assert (await again.connect())[0]
    await again.send_to(text_data=json.dumps(start("CA2", token)))
    closed = await again.receive_output(timeout=2)
    assert closed["code"] == 4008  # 1008 (policy) in the range daphne lets an app send
    assert "already used" in closed["reason"]
    await first.send_to(text_data=json.dumps({"event": "stop", "streamSid": STREAM, "stop": {}}))
    await receive_until_closed(first)


async def test_a_second_stream_of_a_live_call_is_refused_whatever_its_token(app):
    """Another token (a replayed webhook's) for a live call: one stream per CallSid."""
    first = WebsocketCommunicator(app, "/twilio/stream/", headers=signed_headers())
    assert (await first.connect())[0]
    await first.send_to(text_data=json.dumps(start("CA3")))
    await first.receive_from(timeout=2)  # the greeting is flowing: accepted
    for _ in range(3):
        await first.send_to(text_data=media(0))
    later = tokens.make_stream_token(
        settings.TWILIO_AUTH_TOKEN, "CA3", now=time.time() + 5, ttl_s=60
    )
    second = WebsocketCommunicator(app, "/twilio/stream/", headers=signed_headers())
    assert (await second.connect())[0]
    await second.send_to(text_data=json.dumps(start("CA3", later, stream_sid="MZsecond")))
    closed = await second.receive_output(timeout=2)
    assert closed["code"] == 4008
    assert closed["reason"] == "another stream of this call is live"
    await first.send_to(text_data=json.dumps({"event": "stop", "streamSid": STREAM, "stop": {}}))
    assert (await receive_until_closed(first))[-1]["code"] == 1000
    from calls.models import Call

    call = await Call.objects.aget(call_sid="CA3")
    assert (call.stream_sid, call.frames_in, call.status) == (STREAM, 3, "ended")
    assert call_threads("CA3") == []
    # The call has ended: a stream with yet another fresh token is refused, and spends it.
    again = tokens.make_stream_token(
        settings.TWILIO_AUTH_TOKEN, "CA3", now=time.time() + 10, ttl_s=60
    )
    third = WebsocketCommunicator(app, "/twilio/stream/", headers=signed_headers())
    assert (await third.connect())[0]
    await third.send_to(text_data=json.dumps(start("CA3", again, stream_sid="MZthird")))
    closed = await third.receive_output(timeout=2)
    assert (closed["code"], closed["reason"]) == (4008, "the call has ended")
    await call.arefresh_from_db()
    assert (call.stream_sid, call.frames_in, call.status) == (STREAM, 3, "ended")


async def test_a_socket_without_start_is_closed_at_its_deadline_whatever_it_sends(app, settings):
    settings.STREAM_START_TIMEOUT_S = 0.3
    comm = WebsocketCommunicator(app, "/twilio/stream/", headers=signed_headers())
    assert (await comm.connect())[0]
    t0 = time.monotonic()
    closed = None
    while closed is None and time.monotonic() - t0 < 3:
        await comm.send_to(text_data=json.dumps({"event": "connected", "protocol": "Call"}))
        if not await comm.receive_nothing(0.05):
            closed = await comm.receive_output(timeout=1)
    assert closed is not None
    assert (closed["code"], closed["reason"]) == (4008, "no start within 0.3 s")
    assert 0.25 < time.monotonic() - t0 < 1.5


async def test_too_many_sockets_waiting_for_start_push_the_oldest_out(app, settings):
    settings.STREAM_MAX_PENDING = 2
    waiting = []
    for _ in range(3):
        comm = WebsocketCommunicator(app, "/twilio/stream/", headers=signed_headers())
        assert (await comm.connect())[0]
        waiting.append(comm)
    closed = await waiting[0].receive_output(timeout=2)
    assert (closed["code"], closed["reason"]) == (4008, "over 2 sockets waiting for start")
    assert await waiting[1].receive_nothing(0.1)
    # A real call still starts: the longest waiting socket makes room for it.
    await waiting[2].send_to(text_data=json.dumps(start("CA4")))
    await waiting[2].receive_from(timeout=2)  # started: the greeting flows
    for comm in waiting[1:]:
        await comm.disconnect()


async def test_audio_beyond_the_frame_budget_closes_the_stream(app):
    """One message may carry hundreds of frames: the message rate alone did not bound them."""
    comm = WebsocketCommunicator(app, "/twilio/stream/", headers=signed_headers())
    assert (await comm.connect())[0]
    await comm.send_to(text_data=json.dumps(start("CA5")))
    big = media(0, payload=b"\xff" * (FRAME_BYTES * 280))  # 45 KB, 5.6 s of audio
    for _ in range(6):  # 1,680 frames at once: over the burst of 1,000
        await comm.send_to(text_data=big)
    messages = await receive_until_closed(comm)
    assert (messages[-1]["code"], messages[-1]["reason"]) == (4008, "frame flood (over 250/s)")
    from calls.models import Call

    call = await Call.objects.aget(call_sid="CA5")
    assert call.bad_input == {"irregular_frame": 3, "frame_flood": 1}  # 280 frames a message
    assert call.frames_in == 3 * 280  # the messages within the budget, not one frame more
    assert call.end_reason == "frame flood (over 250/s)"


async def test_a_frame_that_is_not_utf8_is_counted_and_recorded(app):
    """The server closes with 1007; the consumer counts it once and records it on the call."""
    comm = WebsocketCommunicator(app, "/twilio/stream/", headers=signed_headers())
    assert (await comm.connect())[0]
    await comm.send_to(text_data=json.dumps(start("CA6")))
    await comm.send_to(text_data=media(0))
    await comm.receive_from(timeout=2)
    await comm.disconnect(code=1007)
    from calls.models import Call, CallEvent

    call = await Call.objects.aget(call_sid="CA6")
    assert call.bad_input == {"not_utf8": 1}
    assert call.end_reason == "disconnect (code 1007)"
    event = await CallEvent.objects.aget(call=call, kind="bad_input")
    assert event.detail == "not_utf8: a text frame that is not UTF-8 (closed with 1007)"
