"""Hostile input at the stream consumer: generated messages, floods, and a 10 MB message.

In process (WebsocketCommunicator, real sessions and recorder, STT_ENGINE=none), hypothesis
throws generated Twilio messages at a call: nothing raises, the call goes on and ends cleanly,
every rejection is counted by kind in `Call.bad_input`, every frame received is written or
counted as dropped, and no thread outlives the call. Then on a real daphne, hostile streams run
beside a well-behaved call, which stays GO.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import time
from collections import Counter
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from hypothesis import HealthCheck, Phase, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from calls.models import Call, CallEvent
from telephony import protocol
from telephony.media.audio import FRAME_BYTES
from telephony.security import signatures, tokens
from telephony.security.livecalls import CLAIMED, ENDED, ended_for_s, live_calls
from telephony.testing.caller import dial, new_sid
from tests.reliability.helpers import (
    answer,
    call_rows,
    close_code,
    database_url,
    open_stream,
    query,
    send,
    signed_headers,
    start,
    stop,
    threads_of,
    token_for,
    until_closed,
    wait_until,
)
from tests.reliability.hostile import (
    DTMF,
    FRAME_BURST,
    Msg,
    before_start_messages,
    event,
    good_frame,
    labelled,
    live_page_frames,
    media,
    mid_call_messages,
    oversized_media_sizes,
    respelled_tokens,
    webhook_values,
    within_frame_budget,
)

pytestmark = pytest.mark.django_db(transaction=True)

STREAM = "MZ" + "e" * 32
PAYLOAD = base64.b64encode(b"\xff" * FRAME_BYTES).decode()
DTMF_BURST = 20  # 2 x DTMF_MAX_PER_S: key presses always let in at once
PROPERTY_SETTINGS = hypothesis_settings(
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "30")),
    deadline=None,
    database=None,  # no example database written into the repository
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # `app` is the same for every example
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@pytest.fixture
def app(settings: Any) -> Any:
    settings.STT_ENGINE = "none"
    settings.PUBLIC_BASE_URL = "https://line.example.com"
    settings.GREETING_TEXT = "Hello"
    from project.asgi import application

    return application


def expected_irregular(audio_sizes: list[int]) -> int:
    """Payloads the consumer must re-cut: not exactly 160 bytes, or arriving behind a remainder."""
    tail = count = 0
    for size in audio_sizes:
        if tail or size != FRAME_BYTES:
            count += 1
        tail = (tail + size) % FRAME_BYTES
    return count


@PROPERTY_SETTINGS
# Within the frame budget (the good frames included): audio beyond it closes the call, which
# `test_audio_beyond_the_frame_budget_closes_the_call` covers.
@given(
    hostile=st.lists(mid_call_messages(STREAM, "CA1"), max_size=25).filter(
        lambda msgs: within_frame_budget(msgs, also=3 + len(msgs))
    )
)
# Found before: a lone surrogate in a reason made the recorder lose a whole batch of rows (the
# call's among them); "[[[..." raised RecursionError out of the parser and ended the consumer.
@example(hostile=[labelled(protocol.WRONG_STREAM, "sid")(media("MZ\ud800\x00", PAYLOAD))])
@example(hostile=[labelled(protocol.INVALID_JSON, "deep", raw=True)("[" * 50_000)])
async def test_hostile_messages_mid_call_are_counted_and_the_call_goes_on(
    app: Any, hostile: list[Msg]
) -> None:
    call_sid, stream_sid = new_sid("CA"), STREAM  # CallSids are unique rows; StreamSids need not
    sent = [good_frame(stream_sid)] * 3
    for msg in hostile:  # a good frame after each: the call must still be listening
        sent += [msg, good_frame(stream_sid)]
    comm = WebsocketCommunicator(app, "/twilio/stream/", headers=signed_headers())
    assert (await comm.connect())[0]
    await comm.send_to(text_data=start(call_sid, stream_sid))
    for msg in sent:
        await send(comm, msg)
    await comm.send_to(text_data=stop(call_sid, stream_sid))
    out = await until_closed(comm)

    assert out[-1]["code"] == 1000, out[-1]
    assert any(m["type"] == "websocket.send" for m in out)  # the greeting went out meanwhile
    call = await Call.objects.aget(call_sid=call_sid)
    assert (call.status, call.end_reason) == ("ended", "stop")
    audio = [m.audio_bytes for m in sent if m.kind is None and m.audio_bytes]
    assert call.frames_in == math.ceil(sum(audio) / FRAME_BYTES)
    # Every frame received was written to STT or counted as dropped (a 45 KB payload overflows
    # the 200-frame queue: its oldest frames are dropped, and counted).
    assert call.frames_in == call.extra["frames_written"] + call.rx_drops
    expected = Counter(m.kind for m in sent if m.kind not in (None, DTMF))
    expected["irregular_frame"] += expected_irregular(audio)
    counts = Counter(call.bad_input)
    key_presses = sum(m.kind == DTMF for m in sent)
    flood = counts.pop("dtmf_flood", 0)
    assert flood <= max(0, key_presses - DTMF_BURST)
    assert counts == +expected
    dtmf_events = await CallEvent.objects.filter(call=call, kind="dtmf").acount()
    assert dtmf_events == key_presses - flood
    # Only the first of each kind is recorded as an event: a flood is no flood of rows.
    assert await CallEvent.objects.filter(call=call, kind="bad_input").acount() == len(counts) + (
        flood > 0
    )
    assert wait_until(lambda: not threads_of(call_sid), 2.0), threads_of(call_sid)


REFUSALS = {
    "missing token": ({}, "missing stream token"),
    "forged token": ({"token": "1999999999." + "0" * 64}, "does not match"),
    "short digest": ({"token": "1999999999.forged"}, "malformed"),
    "expired token": (None, "expired"),
    "another call's token": (None, "does not match"),
    "superscript expiry": ({"token": "²³.abc"}, "malformed"),
    "huge expiry": ({"token": "9" * 5000 + ".abc"}, "malformed"),
    "used token": (None, "already used"),
    # Found by review: the same token spelled another way was a second, unspent token.
    "zero-padded expiry": (None, "malformed"),
    "upper-case digest": (None, "malformed"),
    # Found by review: a second stream of a live call, and a stream of an ended call.
    "another live stream": (None, "another stream of this call is live"),
    "ended call": (None, "the call has ended"),
    "hostile StreamSid": (None, "malformed start"),
}


@PROPERTY_SETTINGS
@given(data=st.data(), refusal=st.sampled_from([None, *REFUSALS]))
async def test_a_stream_is_refused_before_any_audio_or_starts_cleanly(
    app: Any, data: st.DataObject, refusal: str | None
) -> None:
    call_sid, stream_sid = new_sid("CA"), new_sid("MZ")
    early = data.draw(st.lists(before_start_messages(stream_sid), max_size=8))
    params, why = REFUSALS.get(refusal, (None, ""))
    fresh = token_for(call_sid)
    expires, _, digest = fresh.partition(".")
    if refusal == "expired token":
        params = {"token": token_for(call_sid, now=time.time() - 120)}
    elif refusal == "another call's token":
        params = {"token": token_for(new_sid("CA"))}
    elif refusal == "used token":
        params = {"token": fresh}
        spent = tokens.read_stream_token(
            settings.TWILIO_AUTH_TOKEN, call_sid, fresh, now=time.time()
        )
        assert await tokens.token_store().aspend(spent, now=time.time())
    elif refusal == "zero-padded expiry":
        params = {"token": f"{'0' * data.draw(st.integers(1, 3))}{expires}.{digest}"}
        spent = tokens.read_stream_token(
            settings.TWILIO_AUTH_TOKEN, call_sid, fresh, now=time.time()
        )
        assert await tokens.token_store().aspend(spent, now=time.time())
    elif refusal == "upper-case digest":
        params = {"token": f"{expires}.{digest.upper()}"}
    elif refusal == "another live stream":
        params = {"token": fresh}
        assert await live_calls().aclaim(call_sid, "another-stream") == CLAIMED
    elif refusal == "ended call":  # its first stream ran and ended, as the consumer leaves it
        params = {"token": fresh}
        await Call.objects.acreate(
            call_sid=call_sid, stream_sid="MZ-first", status="ended", frames_in=500,
            end_reason="stop",
        )  # fmt: skip
        assert await live_calls().aclaim(call_sid, "MZ-first") == CLAIMED
        await live_calls().arelease(call_sid, "MZ-first", ended_for_s=ended_for_s())
    started_with = stream_sid
    if refusal == "hostile StreamSid":
        started_with = "MZ\ud800 \x00"
    comm = WebsocketCommunicator(app, "/twilio/stream/", headers=signed_headers())
    assert (await comm.connect())[0]
    for msg in early:
        await send(comm, msg)
    await comm.send_to(text_data=start(call_sid, started_with, params))
    for _ in range(3):
        await send(comm, good_frame(stream_sid))

    if refusal is None:
        await comm.send_to(text_data=stop(call_sid, stream_sid))
        out = await until_closed(comm)
        assert out[-1]["code"] == 1000
        call = await Call.objects.aget(call_sid=call_sid)
        assert call.frames_in == 3
        assert Counter(call.bad_input) == +Counter(m.kind for m in early if m.kind)
    else:
        out = await until_closed(comm)
        # Closed at `start`, with the reason, and nothing else: no greeting, no audio taken.
        assert [m["type"] for m in out] == ["websocket.close"]
        assert out[0]["code"] == 4008  # 1008 (policy) in the range daphne allows
        assert why in out[0]["reason"]
        if refusal == "ended call":  # the ended call's record is as it was
            call = await Call.objects.aget(call_sid=call_sid)
            assert (call.status, call.stream_sid, call.frames_in) == ("ended", "MZ-first", 500)
        else:
            assert not await Call.objects.filter(call_sid=call_sid).aexists()
        await comm.send_to(text_data=good_frame(stream_sid).data)  # ignored: the call is over
        assert await comm.receive_nothing(0.1)
        await comm.disconnect()
    if refusal == "another live stream":  # the other stream still holds the call
        assert live_calls().holder(call_sid) == "another-stream"  # type: ignore[attr-defined]
        await live_calls().arelease(call_sid, "another-stream")
    # A refused stream holds nothing; a call that ended stays so; one that ran has ended.
    after = await live_calls().aclaim(call_sid, "after")
    assert after == (CLAIMED if refusal not in (None, "ended call") else ENDED), after
    await live_calls().arelease(call_sid, "after")
    assert wait_until(lambda: not threads_of(call_sid), 2.0), threads_of(call_sid)


async def test_a_message_flood_closes_the_stream_with_its_reason(app: Any) -> None:
    call_sid, stream_sid = new_sid("CA"), new_sid("MZ")
    comm = WebsocketCommunicator(app, "/twilio/stream/", headers=signed_headers())
    assert (await comm.connect())[0]
    await comm.send_to(text_data=start(call_sid, stream_sid))
    frame = good_frame(stream_sid).data
    for _ in range(3000):  # 60 s of audio at once: 12 times the burst Twilio could send
        await comm.send_to(text_data=frame)
    out = await until_closed(comm)
    assert out[-1]["code"] == 4008
    assert "message flood" in out[-1]["reason"]
    call = await Call.objects.aget(call_sid=call_sid)
    assert call.end_reason.startswith("message flood")
    assert call.bad_input == {"message_flood": 1}
    assert 1000 <= call.frames_in < 3000
    assert call.frames_in == call.extra["frames_written"] + call.rx_drops
    await comm.disconnect()
    assert wait_until(lambda: not threads_of(call_sid), 2.0), threads_of(call_sid)


async def test_floods_of_marks_and_keys_are_counted_not_recorded_one_by_one(app: Any) -> None:
    call_sid, stream_sid = new_sid("CA"), new_sid("MZ")
    comm = WebsocketCommunicator(app, "/twilio/stream/", headers=signed_headers())
    assert (await comm.connect())[0]
    await comm.send_to(text_data=start(call_sid, stream_sid))
    for n in range(400):
        mark = {"event": "mark", "streamSid": stream_sid, "mark": {"name": f"made-up-{n}"}}
        await comm.send_to(text_data=json.dumps(mark))
    for _ in range(200):
        key = {"event": "dtmf", "streamSid": stream_sid, "dtmf": {"digit": "5"}}
        await comm.send_to(text_data=json.dumps(key))
    await comm.send_to(text_data=stop(call_sid, stream_sid))
    assert (await until_closed(comm))[-1]["code"] == 1000
    call = await Call.objects.aget(call_sid=call_sid)
    assert call.bad_input["unknown_mark"] == 400
    keys = await CallEvent.objects.filter(call=call, kind="dtmf").acount()
    assert DTMF_BURST <= keys < 40  # the burst, and what the rate refilled meanwhile
    assert call.bad_input["dtmf_flood"] == 200 - keys
    assert await CallEvent.objects.filter(call=call).exclude(kind="dtmf").acount() < 10


@PROPERTY_SETTINGS
@given(sizes=oversized_media_sizes)
async def test_audio_beyond_the_frame_budget_closes_the_call(app: Any, sizes: list[int]) -> None:
    """Found by review: a 64 KB message counted as one message while carrying 300 frames."""
    call_sid, stream_sid = new_sid("CA"), new_sid("MZ")
    comm = WebsocketCommunicator(app, "/twilio/stream/", headers=signed_headers())
    assert (await comm.connect())[0]
    await comm.send_to(text_data=start(call_sid, stream_sid))
    t0 = time.monotonic()
    for size in sizes:
        await comm.send_to(text_data=good_frame(stream_sid, b"\x7f" * size).data)
    out = await until_closed(comm)
    elapsed = time.monotonic() - t0
    assert (out[-1]["code"], out[-1]["reason"]) == (4008, "frame flood (over 250/s)")
    call = await Call.objects.aget(call_sid=call_sid)
    assert call.bad_input["frame_flood"] == 1
    # Let in: the burst and what the rate refilled meanwhile, never the flood.
    assert call.frames_in <= FRAME_BURST + 250 * elapsed + 1
    assert call.frames_in < sum(-(-s // FRAME_BYTES) for s in sizes)
    assert call.frames_in == call.extra["frames_written"] + call.rx_drops
    assert wait_until(lambda: not threads_of(call_sid), 2.0), threads_of(call_sid)


@hypothesis_settings(PROPERTY_SETTINGS, max_examples=min(PROPERTY_SETTINGS.max_examples, 10))
@given(trickle=st.lists(before_start_messages("MZ" + "1" * 32), min_size=1, max_size=6))
async def test_a_socket_without_start_is_closed_at_its_deadline_whatever_it_sends(
    app: Any, settings: Any, trickle: list[Msg]
) -> None:
    """Found by review: harmless messages now and then kept a signed socket open for good."""
    settings.STREAM_START_TIMEOUT_S = 0.3
    comm = WebsocketCommunicator(app, "/twilio/stream/", headers=signed_headers())
    assert (await comm.connect())[0]
    t0 = time.monotonic()
    closed = None
    while closed is None and time.monotonic() - t0 < 3:
        for msg in trickle:
            await send(comm, msg)
        if not await comm.receive_nothing(0.05):
            closed = await comm.receive_output(timeout=1)
    assert closed is not None, "still open after 3 s"
    assert (closed["code"], closed["reason"]) == (4008, "no start within 0.3 s")
    assert time.monotonic() - t0 < 1.5
    await comm.disconnect()


@PROPERTY_SETTINGS
@given(data=st.data())
async def test_a_token_has_one_spelling_only(app: Any, data: st.DataObject) -> None:
    """Found by review: the same token with a zero before its expiry was a second token."""
    call_sid = new_sid("CA")
    token = token_for(call_sid)
    other = data.draw(respelled_tokens(token))
    key, now = settings.TWILIO_AUTH_TOKEN, time.time()
    assert tokens.check_stream_token(key, call_sid, token, now=now) is None
    assert tokens.check_stream_token(key, call_sid, other, now=now) == "malformed stream token"


def staff_cookie() -> list[tuple[bytes, bytes]]:
    from django.contrib.auth.models import Permission, User
    from django.test import Client

    user, _ = User.objects.get_or_create(username="watcher", defaults={"is_staff": True})
    user.user_permissions.add(Permission.objects.get(codename="view_call"))
    client = Client()
    client.force_login(user)
    return [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


@PROPERTY_SETTINGS
@given(frames=st.lists(live_page_frames, min_size=1, max_size=10))
async def test_what_a_live_page_sends_never_disturbs_it(
    app: Any, settings: Any, frames: list[str | bytes]
) -> None:
    """Found by review: non-JSON, binary or deeply nested frames raised in the consumer."""
    from channels.db import database_sync_to_async
    from channels.layers import get_channel_layer

    from calls import live
    from tests.helpers.figures import sample

    settings.LIVE_PAGE_ORIGINS = ["https://line.example.com"]
    headers = [(b"origin", b"https://line.example.com"), *await database_sync_to_async(
        staff_cookie
    )()]  # fmt: skip
    page = WebsocketCommunicator(app, "/ws/admin/metrics/", headers=headers)
    assert (await page.connect())[0]
    assert (await page.receive_json_from(timeout=5))["type"] == "snapshot"
    for frame in frames:
        if isinstance(frame, bytes):
            await page.send_to(bytes_data=frame)
        else:
            await page.send_to(text_data=frame)
    assert await live.publish_sample(get_channel_layer(), sample("CA-live", 4))
    relayed = await page.receive_json_from(timeout=5)  # still listening, nothing else said
    assert (relayed["type"], relayed["call_sid"], relayed["second"]) == ("sample", "CA-live", 4)
    await page.disconnect()


@PROPERTY_SETTINGS
@given(call_sid=webhook_values, caller=webhook_values, callee=webhook_values)
def test_a_webhook_either_refuses_its_fields_or_keeps_them_whole(
    settings: Any, call_sid: str, caller: str, callee: str
) -> None:
    """Found by review: a signed webhook stored any CallSid, From or To as sent."""
    from django.test import Client
    from twilio.request_validator import RequestValidator

    settings.PUBLIC_BASE_URL = "https://line.example.com"
    form = {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "From": caller, "To": callee}
    url = "https://line.example.com/twilio/voice/"
    signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(url, form)
    Call.objects.filter(call_sid=call_sid).delete()
    response = Client().post("/twilio/voice/", form, HTTP_X_TWILIO_SIGNATURE=signature)
    if response.status_code == 400:
        assert response.content  # the reason, said
        assert not Call.objects.filter(call_sid=call_sid).exists()
        return
    assert response.status_code == 200, response.content
    # Kept as sent, and only what `start` and the database would both take.
    call = Call.objects.get(call_sid=call_sid)
    assert (call.from_number, call.to_number) == (caller, callee)
    assert signatures.valid_sid(call_sid)
    for value in (caller, callee):
        assert len(value) <= 32
        assert "\x00" not in value
    call.delete()


# --- a real server ------------------------------------------------------------------------------


def stream_of(base_url: str, call_sid: str) -> tuple[str, str]:
    twiml = asyncio.run(answer(base_url, call_sid, settings.TWILIO_AUTH_TOKEN))
    return twiml.url, twiml.parameters["token"]


async def hostile_stream(base_url: str, messages: list[Msg]) -> tuple[str, tuple[int | None, str]]:
    """A call whose stream carries `messages` and floods, then hangs up; its sid and close."""
    call_sid, stream_sid = new_sid("CA"), STREAM
    twiml = await answer(base_url, call_sid, settings.TWILIO_AUTH_TOKEN)
    async with open_stream(twiml.url, settings.TWILIO_AUTH_TOKEN) as ws:
        await ws.send(start(call_sid, stream_sid, twiml.parameters))
        for msg in messages:
            await ws.send(msg.data)
            await ws.send(good_frame(stream_sid).data)
        await ws.send("y" * 100_000)  # over the consumer's limit, under the server's: counted
        for n in range(300):
            await ws.send(json.dumps(event("mark", stream_sid, name=f"made-up-{n}")))
        await ws.send(stop(call_sid, stream_sid))
        return call_sid, await close_code(ws)


async def oversized_stream(base_url: str, payload: str | bytes, text: bool) -> tuple[str, Any]:
    """A call whose stream sends one message the server itself must refuse; sid and close."""
    call_sid, stream_sid = new_sid("CA"), new_sid("MZ")
    twiml = await answer(base_url, call_sid, settings.TWILIO_AUTH_TOKEN)
    async with open_stream(twiml.url, settings.TWILIO_AUTH_TOKEN) as ws:
        await ws.send(start(call_sid, stream_sid, twiml.parameters))
        for _ in range(25):
            await ws.send(good_frame(stream_sid).data)
        await asyncio.sleep(0.5)
        try:
            await ws.send(payload, text=text)
        except Exception as exc:  # the server may cut the socket while it is being written
            return call_sid, type(exc).__name__
        return call_sid, await close_code(ws)


@hypothesis_settings(
    max_examples=1,
    phases=[Phase.generate],  # one batch against one server: no shrinking runs
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.large_base_example,  # 60 messages is the point
    ],
)
@given(
    batch=st.lists(mid_call_messages(STREAM, "CA1"), min_size=60, max_size=60).filter(
        lambda msgs: within_frame_budget(msgs, also=len(msgs))
    )
)
def test_hostile_streams_beside_a_good_call_on_a_real_server(
    server_factory: Any, batch: list[Msg]
) -> None:
    server = server_factory(env={"STT_ENGINE": "none"})
    base = server.base_url

    async def scenario() -> tuple[Any, ...]:
        good = asyncio.create_task(
            dial(base, auth_token=settings.TWILIO_AUTH_TOKEN, tail_silence_s=8.0)
        )
        await asyncio.sleep(1.0)
        hostile = await hostile_stream(base, batch)
        ten_mb = await oversized_stream(base, "z" * 10_000_000, text=True)
        not_utf8 = await oversized_stream(base, b"\xff\xfe{not utf-8", text=True)
        return await good, hostile, ten_mb, not_utf8

    report, (hostile_sid, hostile_close), (big_sid, big_close), (bad_sid, bad_close) = asyncio.run(
        scenario()
    )
    assert server.alive()
    assert report.ok, report.summary()
    assert hostile_close[0] == 1000, hostile_close
    # daphne (autobahn) fails a connection that breaks the protocol by dropping it: a message
    # over --websocket-max-message-size, invalid UTF-8 in a text frame. The sender sees the
    # socket die (1006) or its send fail; uvicorn closes with 1009 instead (test_faults.py).
    assert big_close in ("ConnectionClosedError", (1006, "")), big_close
    assert bad_close[0] in (1006, 1007), bad_close

    sids = [report.call_sid, hostile_sid, big_sid, bad_sid]
    rows = wait_until(
        lambda: (
            (r := call_rows(database_url(server), sids))
            and all(row["status"] == "ended" for row in r.values())
            and len(r) == 4
            and r
        ),
        10.0,
    )
    assert rows, call_rows(database_url(server), sids)
    good = rows[report.call_sid]
    assert good["go"] is True, good["go_reasons"]  # judged from its per-second figures
    assert good["bad_input"] == {}
    hostile = rows[hostile_sid]
    assert hostile["end_reason"] == "stop"
    assert hostile["bad_input"]["too_large"] >= 1
    assert hostile["bad_input"]["unknown_mark"] >= 300
    assert hostile["frames_in"] == hostile["extra"]["frames_written"] + hostile["rx_drops"]
    for sid in (big_sid, bad_sid):  # cut by the server, the call is closed and accounted for
        assert rows[sid]["end_reason"] == "disconnect (code 1006)"
        assert rows[sid]["frames_in"] == 25
        assert rows[sid]["extra"]["frames_written"] == 25
    log = server.log_text()
    assert "Traceback" not in log, log[-3000:]
    assert "threads still alive" not in log


def test_a_text_frame_that_is_not_utf8_is_counted_once_under_uvicorn(
    server_factory: Any,
) -> None:
    """Found by review: uvicorn closed with 1007 and logged a traceback; nothing was counted."""
    server = server_factory(env={"STT_ENGINE": "none"}, server="uvicorn")  # what bin/run serves
    call_sid, close = asyncio.run(oversized_stream(server.base_url, b"\xff\xfe{not", text=True))
    assert close == (1007, ""), close
    row = wait_until(
        lambda: (
            (r := call_rows(database_url(server), [call_sid]).get(call_sid))
            and r["status"] == "ended"
            and r
        ),
        10.0,
    )
    assert row, call_rows(database_url(server), [call_sid])
    assert row["bad_input"] == {"not_utf8": 1}
    assert row["end_reason"] == "disconnect (code 1007)"
    assert (row["frames_in"], row["extra"]["frames_written"]) == (25, 25)
    events = query(
        database_url(server),
        "SELECT e.detail FROM calls_callevent e JOIN calls_call c ON c.id = e.call_id "
        "WHERE c.call_sid = ? AND e.kind = 'bad_input'",
        (call_sid,),
    )
    assert events == [("not_utf8: a text frame that is not UTF-8 (closed with 1007)",)]
    log = server.log_text()
    assert "Traceback" not in log
    assert "Invalid UTF-8" not in log  # the server's own line, said instead by the consumer:
    assert log.count("not_utf8") == 1
