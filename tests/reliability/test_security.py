"""Who may talk to the line: signed webhooks, single-use stream tokens, staff-only admin, secrets.

The stream's own refusals (unsigned upgrade; missing, wrong, expired or reused token; hostile
SIDs), each closed before any audio is taken, are property-tested in test_hostile_input.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from twilio.request_validator import RequestValidator

from calls.models import Call
from telephony import security
from telephony.testing.caller import new_sid
from telephony.testing.server_process import REPO_ROOT, ServerProcess, free_port
from tests.reliability.conftest import REDIS_HOST, REDIS_PORT, need
from tests.reliability.helpers import (
    answer,
    call_rows,
    close_code,
    database_url,
    open_stream,
    start,
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


@pytest.mark.django_db
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


@pytest.mark.django_db
def test_the_answer_carries_a_token_for_this_call_only(client: Client, line: None) -> None:
    response = client.post("/twilio/voice/", FORM, **signed("/twilio/voice/", FORM))
    assert response.status_code == 200
    token = re.search(rb'<Parameter name="token" value="([^"]+)"', response.content).group(1)
    now = time.time()
    assert security.check_stream_token(KEY, FORM["CallSid"], token.decode(), now=now) is None
    assert security.check_stream_token(KEY, "CA" + "2" * 32, token.decode(), now=now)
    assert b"wss://line.example.com/twilio/stream/" in response.content


# --- single use, in one process and across processes --------------------------------------------


def token(call_sid: str = "CA1", ttl_s: int = 60) -> str:
    return security.make_stream_token(KEY, call_sid, now=time.time(), ttl_s=ttl_s)


def checked(call_sid: str = "CA1", ttl_s: int = 60) -> security.StreamToken:
    """A token as the consumer spends it: checked for its call."""
    read = security.read_stream_token(KEY, call_sid, token(call_sid, ttl_s), now=time.time())
    assert isinstance(read, security.StreamToken), read
    return read


async def test_a_token_is_spent_once_in_memory() -> None:
    store = security.UsedTokens()
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
    one = security.RedisUsedTokens(url, prefix=prefix)
    two = security.RedisUsedTokens(url, prefix=prefix)
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
    store = security.RedisUsedTokens(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    spent = checked()
    t0 = time.monotonic()
    assert await store.aspend(spent, now=time.time())
    assert not await store.aspend(spent, now=time.time())
    assert time.monotonic() - t0 < 1.0  # a dead Redis delays a call's start, never hangs it
    assert store.fallbacks == 2


def test_the_store_follows_redis_url(settings: Any) -> None:
    settings.REDIS_URL = ""
    assert isinstance(security.token_store(), security.UsedTokens)
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    settings.CHANNELS_PREFIX = "deploy-a"
    store = security.token_store()
    assert isinstance(store, security.RedisUsedTokens)
    assert store.prefix == "deploy-a"
    settings.REDIS_URL = ""
    assert isinstance(security.token_store(), security.UsedTokens)


def test_a_token_bucket_allows_its_burst_then_its_rate() -> None:
    now = [0.0]
    bucket = security.TokenBucket(10.0, 20, clock=lambda: now[0])
    assert sum(bucket.take() for _ in range(50)) == 20
    now[0] += 0.5  # half a second refills 5
    assert sum(bucket.take() for _ in range(50)) == 5
    now[0] += 100.0  # never more than the burst
    assert sum(bucket.take() for _ in range(50)) == 20


def test_hostile_tokens_and_sids_are_refused_not_raised() -> None:
    now = time.time()
    for bad in ("²³.abc", "9" * 5000 + ".abc", ".abc", "12", "", "١٢٣.abc"):
        assert security.check_stream_token(KEY, "CA1", bad, now=now) is not None, bad
    good = token("CA1")
    assert "does not match" in security.check_stream_token(KEY, "CA1\ud800", good, now=now)
    for sid in ("MZ\ud800", "MZ x", "MZ\x00", "", "M" * 65, "MZ/../x"):
        assert not security.valid_sid(sid), sid
    assert security.valid_sid("CA" + "f" * 32)


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

    async def refused(params: dict[str, str], call_sid: str) -> tuple[int | None, int]:
        twiml = await answer(server.base_url, call_sid, auth)
        async with open_stream(twiml.url, auth) as ws:
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
        expired = security.make_stream_token(auth, "CA" + "8" * 32, now=time.time() - 120, ttl_s=60)
        return [
            await refused({"token": "1999999999.forged"}, "CA" + "6" * 32),
            await refused({"token": expired}, "CA" + "8" * 32),
            await refused({}, "CA" + "9" * 32),
            await refused(used.parameters, "CA" + "7" * 32),
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
