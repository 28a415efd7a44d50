"""The stream consumer through channels' WebsocketCommunicator (in-process, real threads)."""

import base64
import json
import threading
import time

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from twilio.request_validator import RequestValidator

from telephony import security
from telephony.media.audio import FRAME_BYTES

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
    url = url or security.stream_url(settings.PUBLIC_BASE_URL)
    signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(url, {})
    return [(b"x-twilio-signature", signature.encode()), (b"host", b"line.example.com")]


def start(call_sid: str = CALL, token: str | None = None, stream_sid: str = STREAM) -> dict:
    if token is None:
        token = security.make_stream_token(
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
    url = security.stream_url(settings.PUBLIC_BASE_URL).rstrip("/")
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

    token = security.make_stream_token(settings.TWILIO_AUTH_TOKEN, "CA2", now=time.time(), ttl_s=60)
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
