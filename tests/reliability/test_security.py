"""Who may talk to the line: signed webhooks, single-use stream tokens, staff-only admin, secrets.

The stream's own refusals (unsigned upgrade; missing, wrong, expired or reused token; hostile
SIDs), each closed before any audio is taken, are property-tested in test_hostile_input.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from django.contrib.auth.models import User
from django.test import Client
from twilio.request_validator import RequestValidator

from calls.models import Call
from calls.recorder import get_recorder
from telephony.security import ratelimit, signatures, tokens
from telephony.testing.caller import SIGNATURE_HEADER, VOICE_PATH, dial, new_sid
from telephony.testing.server_process import REPO_ROOT, ServerProcess, free_port
from tests.reliability.conftest import REDIS_HOST, REDIS_PORT, need
from tests.reliability.helpers import (
    answer,
    call_rows,
    close_code,
    database_url,
    open_stream,
    start,
    stop,
    wait_until,
)
from tests.reliability.hostile import good_frame

BASE = "https://line.example.com"
KEY = "test-auth-token"
FORM = {"CallSid": "CA" + "1" * 32, "AccountSid": "AC" + "0" * 32, "From": "+15005550006"}


@pytest.fixture
def line(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = BASE
    settings.TWILIO_AUTH_TOKEN = KEY


def signed(path: str, form: dict[str, str], key: str = KEY) -> dict[str, str]:
    return {"HTTP_X_TWILIO_SIGNATURE": RequestValidator(key).compute_signature(BASE + path, form)}


# --- webhooks -----------------------------------------------------------------------------------


# Committed rows (transaction=True): the status event is written by the recorder's own thread and
# connection, which must find the answered call, and is flushed before the tables are emptied.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/twilio/voice/", "/twilio/status/"])
def test_webhooks_answer_only_what_twilio_signed(client: Client, line: None, path: str) -> None:
    tampered = {**FORM, "From": "+972500000000"}
    refused = {
        "unsigned": {},
        "garbage": {"HTTP_X_TWILIO_SIGNATURE": "not-a-signature"},
        "another account's token": signed(path, FORM, key="someone-elses-token"),
        "signed for other fields": signed(path, tampered),
        "signed for the other webhook": signed(
            "/twilio/status/" if path == "/twilio/voice/" else "/twilio/voice/", FORM
        ),
    }
    for why, headers in refused.items():
        response = client.post(path, FORM, **headers)
        assert response.status_code == 403, why
    assert not Call.objects.exists()  # nothing was written for a refused request

    if path == "/twilio/status/":  # a status is for a call the line answered
        voice = "/twilio/voice/"
        assert client.post(voice, FORM, **signed(voice, FORM)).status_code == 200
    response = client.post(path, FORM, **signed(path, FORM))
    assert response.status_code in (200, 204)
    assert client.get(path, **signed(path, {})).status_code == 405
    assert get_recorder().flush(timeout=5.0)


@pytest.mark.django_db
def test_the_answer_carries_a_token_for_this_call_only(client: Client, line: None) -> None:
    response = client.post("/twilio/voice/", FORM, **signed("/twilio/voice/", FORM))
    assert response.status_code == 200
    token = re.search(rb'<Parameter name="token" value="([^"]+)"', response.content).group(1)
    now = time.time()
    assert tokens.check_stream_token(KEY, FORM["CallSid"], token.decode(), now=now) is None
    assert tokens.check_stream_token(KEY, "CA" + "2" * 32, token.decode(), now=now)
    assert b"wss://line.example.com/twilio/stream/" in response.content


@pytest.mark.django_db
def test_a_status_for_a_call_never_answered_is_refused_and_makes_no_call(
    client: Client, line: None
) -> None:
    """Found by review: it created a bare active call that stayed until the next start-up."""
    from calls.recorder import get_recorder

    queued = dict(get_recorder().stats().enqueued)
    path = "/twilio/status/"
    status = {**FORM, "StreamSid": "MZ1", "StreamEvent": "stream-started"}
    response = client.post(path, status, **signed(path, status))
    assert (response.status_code, response.content) == (404, b"unknown CallSid")
    bad = {**status, "CallSid": "<b>CA1</b>"}
    response = client.post(path, bad, **signed(path, bad))
    assert response.status_code == 400
    assert b"CallSid is not a SID" in response.content
    assert not Call.objects.exists()
    # Nothing queued either: an event for an unknown call made its row when written.
    assert dict(get_recorder().stats().enqueued) == queued


# --- single use, in one process and across processes --------------------------------------------


def token(call_sid: str = "CA1", ttl_s: int = 60) -> str:
    return tokens.make_stream_token(KEY, call_sid, now=time.time(), ttl_s=ttl_s)


def checked(call_sid: str = "CA1", ttl_s: int = 60) -> tokens.StreamToken:
    """A token as the consumer spends it: checked for its call."""
    read = tokens.read_stream_token(KEY, call_sid, token(call_sid, ttl_s), now=time.time())
    assert isinstance(read, tokens.StreamToken), read
    return read


async def test_a_token_is_spent_once_in_memory() -> None:
    store = tokens.UsedTokens()
    first = checked()
    assert await store.aspend(first, now=time.time())
    assert not await store.aspend(first, now=time.time())
    assert await store.aspend(checked("CA2"), now=time.time())
    # Forgotten once expired (the signature check refuses it by then anyway).
    assert store.spend(first, now=time.time() + 3600)


@pytest.mark.redis
async def test_a_token_is_spent_once_across_processes_through_redis() -> None:
    need(REDIS_HOST, REDIS_PORT, "Redis")
    url, prefix = f"redis://{REDIS_HOST}:{REDIS_PORT}/0", f"test{os.getpid()}{time.time_ns()}"
    # Two stores, two connections: what two server processes behind a load balancer have.
    one = tokens.RedisUsedTokens(url, prefix=prefix)
    two = tokens.RedisUsedTokens(url, prefix=prefix)
    spent = checked(ttl_s=30)
    assert await one.aspend(spent, now=time.time())
    assert not await two.aspend(spent, now=time.time())
    assert not await one.aspend(spent, now=time.time())
    assert await two.aspend(checked("CA2"), now=time.time())
    assert one.fallbacks == two.fallbacks == 0

    import redis.asyncio as redis

    client = redis.Redis.from_url(url)
    try:
        ttl = await client.ttl(one.key(spent))
        assert 0 < ttl <= 31  # gone with the token: nothing piles up in Redis
        assert await client.exists(f"{prefix}:stream-token:{spent.covered}") == 0  # hashed
    finally:
        await client.delete(one.key(spent), one.key(checked("CA2")))
        await client.aclose()


async def test_without_redis_a_token_is_still_spent_once_in_this_process() -> None:
    store = tokens.RedisUsedTokens(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    spent = checked()
    t0 = time.monotonic()
    assert await store.aspend(spent, now=time.time())
    assert not await store.aspend(spent, now=time.time())
    assert time.monotonic() - t0 < 1.0  # a dead Redis delays a call's start, never hangs it
    assert store.fallbacks == 2


def test_the_store_follows_redis_url(settings: Any) -> None:
    settings.REDIS_URL = ""
    assert isinstance(tokens.token_store(), tokens.UsedTokens)
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    settings.CHANNELS_PREFIX = "deploy-a"
    store = tokens.token_store()
    assert isinstance(store, tokens.RedisUsedTokens)
    assert store.prefix == "deploy-a"
    settings.REDIS_URL = ""
    assert isinstance(tokens.token_store(), tokens.UsedTokens)


def test_a_token_bucket_allows_its_burst_then_its_rate() -> None:
    now = [0.0]
    bucket = ratelimit.TokenBucket(10.0, 20, clock=lambda: now[0])
    assert sum(bucket.take() for _ in range(50)) == 20
    now[0] += 0.5  # half a second refills 5
    assert sum(bucket.take() for _ in range(50)) == 5
    now[0] += 100.0  # never more than the burst
    assert sum(bucket.take() for _ in range(50)) == 20


def test_hostile_tokens_and_sids_are_refused_not_raised() -> None:
    now = time.time()
    for bad in ("²³.abc", "9" * 5000 + ".abc", ".abc", "12", "", "١٢٣.abc"):
        assert tokens.check_stream_token(KEY, "CA1", bad, now=now) is not None, bad
    good = token("CA1")
    assert "does not match" in tokens.check_stream_token(KEY, "CA1\ud800", good, now=now)
    for sid in ("MZ\ud800", "MZ x", "MZ\x00", "", "M" * 65, "MZ/../x"):
        assert not signatures.valid_sid(sid), sid
    assert signatures.valid_sid("CA" + "f" * 32)


# --- the admin ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_call_review_pages_are_for_staff_only(client: Client) -> None:
    call = Call.objects.create(call_sid="CA-review")
    pages = ["/admin/", "/admin/calls/call/", f"/admin/calls/call/{call.pk}/change/"]
    for page in pages:  # anonymous: to the login page
        response = client.get(page)
        assert response.status_code == 302, page
        assert response["Location"].startswith("/admin/login/")
    client.force_login(User.objects.create_user("caller", password="x"))
    for page in pages:  # logged in but not staff: to the login page too
        assert client.get(page).status_code == 302, page
    staff = User.objects.create_user("operator", password="x", is_staff=True, is_superuser=True)
    client.force_login(staff)
    for page in pages:
        assert client.get(page).status_code == 200, page


# --- settings: secrets from the environment, production checked ---------------------------------


def manage(args: list[str], env: dict[str, str], script: str = "") -> subprocess.CompletedProcess:
    """Run manage.py in a clean environment (no developer variables leaking in)."""
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    command = " ".join([sys.executable, "manage.py", *args])
    return subprocess.run(
        ["bash", "-c", f"set -a\n{script}\nset +a\nexec {command}"],
        cwd=REPO_ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def readme_production_env() -> str:
    """The production environment block of the README, as an operator would paste it."""
    readme = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(# production environment.*?)```", readme, re.S)
    assert len(blocks) == 1, "README needs one ```sh block starting '# production environment'"
    return blocks[0]


def test_check_deploy_passes_with_the_readmes_production_settings() -> None:
    result = manage(["check", "--deploy", "--fail-level", "WARNING"], {}, readme_production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("missing", ["SECRET_KEY", "TWILIO_AUTH_TOKEN"])
def test_production_refuses_to_start_without_its_secrets(missing: str) -> None:
    script = readme_production_env() + f"\nunset {missing}\n"
    result = manage(["check"], {}, script)
    assert result.returncode != 0
    assert f"{missing} must be set in the environment when DEBUG is false" in result.stderr


def test_development_defaults_are_not_production_ones() -> None:
    result = manage(["check", "--deploy"], {"DEBUG": "true"})
    assert result.returncode == 0, result.stderr  # warnings only: it runs, and says why not
    for warning in ("security.W004", "security.W008", "security.W012", "security.W018"):
        assert warning in result.stdout + result.stderr


def test_a_refused_stream_is_closed_by_the_real_server(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """daphne lets an app close only with 1000 or 3000-4999: a 1008 left the socket open."""
    from django.conf import settings as django_settings

    server = server_factory(env={"STT_ENGINE": "none"})
    auth = django_settings.TWILIO_AUTH_TOKEN

    async def refused(
        params: dict[str, str], call_sid: str, *, answered: bool = False
    ) -> tuple[int | None, int]:
        if not answered:  # an ended call's webhook is answered <Hangup/>: no second answer
            await answer(server.base_url, call_sid, auth)
        async with open_stream(signatures.stream_url(server.base_url), auth) as ws:
            await ws.send(start(call_sid, new_sid("MZ"), params))
            for _ in range(5):
                await ws.send(good_frame("MZ-unused").data)
            code, _ = await close_code(ws, 5.0)
        return code, len(call_rows(database_url(server), [call_sid]))

    async def scenario() -> list[tuple[int | None, int]]:
        used = await answer(server.base_url, "CA" + "7" * 32, auth)
        async with open_stream(used.url, auth) as ws:  # a real stream spends the token
            await ws.send(start("CA" + "7" * 32, new_sid("MZ"), used.parameters))
            await ws.recv()
        expired = tokens.make_stream_token(auth, "CA" + "8" * 32, now=time.time() - 120, ttl_s=60)
        return [
            await refused({"token": "1999999999.forged"}, "CA" + "6" * 32),
            await refused({"token": expired}, "CA" + "8" * 32),
            await refused({}, "CA" + "9" * 32),
            await refused(used.parameters, "CA" + "7" * 32, answered=True),
        ]

    results = asyncio.run(scenario())
    assert [code for code, _ in results] == [4008] * 4
    # The webhook wrote each call's row; no stream ever made one active.
    rows = call_rows(database_url(server))
    assert {sid: r["status"] for sid, r in rows.items() if sid != "CA" + "7" * 32} == {
        "CA" + "6" * 32: "answered",
        "CA" + "8" * 32: "answered",
        "CA" + "9" * 32: "answered",
    }
    assert server.log_text().count("refused:") == 4


# --- what an adversarial review of a running server found ---------------------------------------


async def post_voice(base_url: str, call_sid: str, auth: str) -> tuple[int, str]:
    """POST the signed voice webhook (as Twilio did, or as a replay of it); status and body."""
    url = base_url + VOICE_PATH
    form = {"AccountSid": "AC" + "0" * 32, "CallSid": call_sid, "From": "+15005550006"}
    signature = RequestValidator(auth).compute_signature(url, form)
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=form, headers={SIGNATURE_HEADER: signature}) as response,
    ):
        return response.status, await response.text()


def token_of(twiml: str) -> str | None:
    found = re.search(r'<Parameter name="token" value="([^"]+)"', twiml)
    return found.group(1) if found else None


def test_one_live_stream_per_call_and_an_ended_call_stays_ended(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """A respelled token, a replayed webhook's token mid-call, then after the call: refused."""
    from django.conf import settings as django_settings

    server = server_factory(env={"STT_ENGINE": "none"}, server="uvicorn")
    auth, base = django_settings.TWILIO_AUTH_TOKEN, server.base_url
    call_sid, stream_sid = new_sid("CA"), new_sid("MZ")

    async def refused(url: str, params: dict[str, str]) -> tuple[int | None, str]:
        async with open_stream(url, auth) as ws:
            await ws.send(start(call_sid, new_sid("MZ"), params))
            for _ in range(5):
                await ws.send(good_frame("MZ-other").data)
            return await close_code(ws, 5.0)

    async def scenario() -> dict[str, Any]:
        twiml = await answer(base, call_sid, auth)
        token = twiml.parameters["token"]
        expires, _, digest = token.partition(".")
        seen: dict[str, Any] = {}
        async with open_stream(twiml.url, auth) as ws:
            await ws.send(start(call_sid, stream_sid, twiml.parameters))
            await ws.recv()  # the greeting flows: the call is live
            for _ in range(25):
                await ws.send(good_frame(stream_sid).data)
            seen["respelled"] = await refused(twiml.url, {"token": f"0{expires}.{digest}"})
            # A replayed webhook, while the call is live: a fresh token, refused as a second
            # stream; another one kept for after the call.
            # (A second apart: two answers in the same second carry the same token.)
            await asyncio.sleep(1.1)
            status, replayed = await post_voice(base, call_sid, auth)
            assert status == 200
            seen["second stream"] = await refused(twiml.url, {"token": token_of(replayed)})
            await asyncio.sleep(1.1)
            kept = token_of((await post_voice(base, call_sid, auth))[1])
            for _ in range(25):
                await ws.send(good_frame(stream_sid).data)
            await ws.send(stop(call_sid, stream_sid))
            seen["first"] = await close_code(ws)
        seen["ended"] = wait_until(
            lambda: call_rows(database_url(server), [call_sid])[call_sid]["status"] == "ended",
            10.0,
        )
        seen["row"] = call_rows(database_url(server), [call_sid])[call_sid]
        seen["replay after"] = await post_voice(base, call_sid, auth)
        seen["after the call"] = await refused(twiml.url, {"token": kept})
        return seen

    seen = asyncio.run(scenario())
    assert seen["first"] == (1000, "stop")
    assert seen["respelled"] == (4008, "malformed stream token")
    assert seen["second stream"] == (4008, "another stream of this call is live")
    assert seen["after the call"] == (4008, "the call has ended")
    status, body = seen["replay after"]
    assert status == 200
    assert "<Hangup />" in body
    assert token_of(body) is None  # no token for an ended call
    row = seen["row"]
    assert (row["stream_sid"], row["frames_in"], row["end_reason"]) == (stream_sid, 50, "stop")
    time.sleep(0.5)  # anything the refused streams could have written is written by now
    # The call's record is the first stream's, untouched by what came after it.
    assert call_rows(database_url(server), [call_sid])[call_sid] == row
    log = server.log_text()
    assert "threads still alive" not in log
    assert "Traceback" not in log
    assert log.count("stream refused: ") == 3


def test_sockets_that_never_start_are_closed_and_bounded(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """Signed sockets that send harmless messages but no `start`: 200 stayed open for 30 s."""
    from django.conf import settings as django_settings

    env = {"STT_ENGINE": "none", "STREAM_START_TIMEOUT_S": "1", "STREAM_MAX_PENDING": "20"}
    server = server_factory(env=env, server="uvicorn")
    auth, url = django_settings.TWILIO_AUTH_TOKEN, signatures.stream_url(server.base_url)

    async def idle(delay_s: float) -> tuple[tuple[int | None, str], float]:
        await asyncio.sleep(delay_s)
        async with open_stream(url, auth) as ws:
            opened = time.monotonic()

            async def chatter() -> None:
                with contextlib.suppress(Exception):
                    while True:
                        await ws.send(json.dumps({"event": "connected", "protocol": "Call"}))
                        await asyncio.sleep(0.2)

            talker = asyncio.create_task(chatter())
            closed = await close_code(ws, 10.0)
            talker.cancel()
            return closed, time.monotonic() - opened

    async def scenario() -> tuple[list[Any], Any]:
        sockets = asyncio.gather(*(idle(0.01 * n) for n in range(30)))
        await asyncio.sleep(0.6)  # all 30 opened; 20 may wait
        report = await dial(server.base_url, auth_token=auth, tail_silence_s=2.0)
        return await sockets, report

    closes, report = asyncio.run(scenario())
    assert report.ok, report.summary()  # a real call still starts, and runs
    evicted = [c for c, _ in closes if c == (4008, "over 20 sockets waiting for start")]
    late = [t for c, t in closes if c == (4008, "no start within 1 s")]
    assert len(evicted) + len(late) == 30, closes
    assert len(evicted) >= 10  # the 10 over the bound, and one more for the real call
    assert all(0.9 < t < 2.5 for t in late), late
    log = server.log_text()
    assert log.count("stream refused: ") <= 2  # one line per kind; the rest counted
    assert "Traceback" not in log


def test_an_unsigned_webhook_flood_is_refused_on_the_loop_and_logged_in_sum(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """Each refusal wrote a WARNING line and took a turn in Django's one sync thread."""
    from django.conf import settings as django_settings

    server = server_factory(env={"STT_ENGINE": "none"}, server="uvicorn")
    auth, url = django_settings.TWILIO_AUTH_TOKEN, server.base_url + VOICE_PATH
    flood = 3000

    async def unsigned(http: aiohttp.ClientSession, n: int) -> tuple[int, str]:
        form = {"CallSid": f"CA{n:032x}", "From": "+15005550006"}
        async with http.post(url, data=form) as response:
            await response.read()
            return response.status, response.headers.get("Content-Type", "")

    async def scenario() -> tuple[list[tuple[int, str]], Any]:
        call = asyncio.create_task(dial(server.base_url, auth_token=auth, tail_silence_s=4.0))
        connector = aiohttp.TCPConnector(limit=50)
        async with aiohttp.ClientSession(connector=connector) as http:
            answers = []
            for first in range(0, flood, 500):
                answers += await asyncio.gather(
                    *(unsigned(http, n) for n in range(first, first + 500))
                )
        return answers, await call

    answers, report = asyncio.run(scenario())
    assert report.ok, report.summary()  # the real call beside the flood
    # Every one refused, by the guard on the event loop (Django would answer text/html).
    assert set(answers) == {(403, "text/plain")}
    summary = wait_until(lambda: SUMMARY.search(server.log_text()), 15.0, 0.2)
    assert summary, server.log_text()[-2000:]
    assert int(summary.group(1).replace(",", "")) == flood - 1  # all but the first, counted
    log = server.log_text()
    assert log.count("webhook refused: ") == 1
    assert "Traceback" not in log


SUMMARY = re.compile(r"webhook: ([\d,]+) more refused in the last 10 s")
