"""Scale-out: two server processes behind a load balancer, sharing PostgreSQL and Redis.

The balancer (a TCP proxy on loopback) sends webhooks and streams round-robin, on counters of
their own, so a call's webhook is answered by one process and its stream served by the other.
Both processes have the balancer's origin as PUBLIC_BASE_URL, as they would in production.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from websockets.asyncio.client import connect

from telephony.testing.caller import dial_many, new_sid
from telephony.testing.server_process import REPO_ROOT, ServerProcess, free_port
from tests.reliability.conftest import once_per_run
from tests.reliability.helpers import answer, call_rows, close_code, open_stream, start, wait_until
from tests.reliability.netproxy import TcpProxy

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

STAFF_SESSION = """
from django.contrib.auth.models import Permission, User
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.auth import SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY
user = User.objects.create_user("operator", password="x", is_staff=True)
user.user_permissions.add(Permission.objects.get(codename="view_call"))
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.save()
print(session.session_key)
"""


class Balancer:
    """Round-robin per connection, WebSocket upgrades and plain HTTP on counters of their own."""

    def __init__(self) -> None:
        self.http = 0
        self.ws = 0  # streams start on the other process than webhooks (B, then A, ...)

    def __call__(self, head: bytes) -> int:
        if head.startswith(b"GET /twilio/stream/"):
            self.ws += 1
            return self.ws % 2
        self.http += 1
        return (self.http - 1) % 2


def staff_session(env: dict[str, str]) -> str:
    """Create a staff user who may view calls, logged in: return the session key."""
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", STAFF_SESSION],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return result.stdout.strip().splitlines()[-1]


def test_two_processes_serve_one_line(
    pg_database: str,
    redis_env: dict[str, str],
    server_factory: Callable[..., ServerProcess],
) -> None:
    ports = [free_port(), free_port()]
    balancer = TcpProxy([("127.0.0.1", p) for p in ports], choose=Balancer()).start()
    try:
        public = f"http://127.0.0.1:{balancer.port}"
        env = {
            "DATABASE_URL": pg_database,
            **redis_env,
            "STT_ENGINE": "none",
            "PUBLIC_BASE_URL": public,
            "GREETING_TEXT": "Hi.",
        }
        a = server_factory(env=env, port=ports[0])
        b = server_factory(env=env, port=ports[1], migrate=False)
        servers = {"A": a, "B": b}
        session_key = staff_session(a.env)
        auth = settings.TWILIO_AUTH_TOKEN
        seen: dict[str, set[str]] = defaultdict(set)  # live page: message type -> CallSids

        async def watch(live: Any) -> None:
            async for text in live:
                message = json.loads(text)
                if "call_sid" in message:
                    seen[message["type"]].add(message["call_sid"])

        async def scenario() -> tuple[list[Any], list[int | None]]:
            # The live page, open on A only.
            async with connect(
                f"ws://127.0.0.1:{ports[0]}/ws/admin/metrics/",
                additional_headers={"Cookie": f"sessionid={session_key}", "Origin": public},
                proxy=None,
            ) as live:
                snapshot = json.loads(await live.recv())
                assert snapshot == {"type": "snapshot", "calls": []}
                watcher = asyncio.create_task(watch(live))
                reports = await dial_many(
                    4, public, auth_token=auth, tail_silence_s=6.0, ramp_s=2.0
                )
                codes = await replay_a_token(ports, public, auth)
                await asyncio.sleep(1.5)  # the last "ended" messages
                watcher.cancel()
            return reports, codes

        reports, codes = asyncio.run(scenario())
        assert all(r.ok for r in reports), [r.summary() for r in reports]
        # The token that A's stream spent is refused by B, and again by A; a fresh token from a
        # replayed webhook is refused by B too: one live stream per call in the deployment.
        assert codes == [None, 4008, 4008, 4008], codes

        sids = [r.call_sid for r in reports]
        logs = {name: server.log_text() for name, server in servers.items()}
        # (daphne sends no close reason: the refusal's is in B's log.)
        assert "stream refused: another stream of this call is live" in logs["B"]
        answered = {s: [n for n, log in logs.items() if f"call {s} answered" in log] for s in sids}
        streamed = {s: [n for n, log in logs.items() if f"call={s} stream" in log] for s in sids}
        assert all(len(v) == 1 for v in [*answered.values(), *streamed.values()])
        pairs = {(answered[s][0], streamed[s][0]) for s in sids}
        print(f"\nwebhook -> stream, per call: {[answered[s] + streamed[s] for s in sids]}")
        assert {("A", "B"), ("B", "A")} <= pairs  # answered by one process, streamed by the other

        rows = wait_until(
            lambda: (
                (r := call_rows(pg_database, sids))
                and all(row["status"] == "ended" for row in r.values())
                and r
            ),
            10.0,
            0.2,
        )
        assert rows
        assert len(rows) == 4
        pids = {"A": a.process.pid, "B": b.process.pid}
        host = socket.gethostname()
        for sid, report in zip(sids, reports, strict=True):
            row = rows[sid]
            # One row per call, with what the webhook wrote and what the stream wrote.
            assert row["from_number"] == "+15005550006"
            assert row["answered_at"] is not None
            assert row["frames_in"] == report.frames_sent
            assert row["process"] == f"{host}:{pids[streamed[sid][0]]}"
            assert row["go"] is not None  # judged from samples that both processes wrote
        # The live page on A showed every call, those on B too (through Redis).
        assert set(sids) <= seen["started"], dict(seen)
        assert set(sids) <= seen["sample"]
        assert {s for s in sids if streamed[s] == ["B"]} <= seen["ended"]
    finally:
        balancer.stop()


async def replay_a_token(ports: list[int], public: str, auth: str) -> list[int | None]:
    """Answer a call, stream it on A, then replay its start on B and on A: close codes."""
    call_sid = new_sid("CA")
    twiml = await answer(public, call_sid, auth)
    direct = [f"ws://127.0.0.1:{port}/twilio/stream/" for port in ports]
    codes: list[int | None] = []
    async with open_stream(twiml.url, auth, connect_to=direct[0]) as first:
        await first.send(start(call_sid, new_sid("MZ"), twiml.parameters))
        await first.recv()  # the greeting flows: accepted
        codes.append(None)
        for again in (direct[1], direct[0]):
            async with open_stream(twiml.url, auth, connect_to=again) as replay:
                await replay.send(start(call_sid, new_sid("MZ"), twiml.parameters))
                codes.append((await close_code(replay, 5.0))[0])
        await asyncio.sleep(1.1)  # two answers in the same second carry the same token
        fresh = await answer(public, call_sid, auth)  # the webhook replayed: a new token
        assert fresh.parameters != twiml.parameters
        async with open_stream(twiml.url, auth, connect_to=direct[1]) as second:
            await second.send(start(call_sid, new_sid("MZ"), fresh.parameters))
            codes.append((await close_code(second, 5.0))[0])
    return codes


@pytest.fixture
def staff_headers(transactional_db: None) -> list[tuple[bytes, bytes]]:
    """A browser logged in as staff who may view calls."""
    from django.contrib.auth.models import Permission, User
    from django.test import Client

    user = User.objects.create_user("operator", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_call"))
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    return [(b"origin", b"http://testserver"), (b"cookie", cookie)]


@pytest.fixture
def redis_app(settings: Any, redis_env: dict[str, str]) -> Any:
    """The ASGI app on the Redis channel layer, configured as production configures it."""
    from project.settings import redis_channel_layer

    once_per_run()
    settings.CHANNEL_LAYERS = {
        "default": redis_channel_layer(redis_env["REDIS_URL"], redis_env["CHANNELS_PREFIX"])
    }
    settings.LIVE_PAGE_ORIGINS = ["http://testserver"]  # the page's origin (staff_headers)
    from project.asgi import application

    return application


async def test_the_live_page_outlives_an_idle_spell_on_redis(
    redis_app: Any, staff_headers: list[tuple[bytes, bytes]]
) -> None:
    """redis-py's 5 s read timeout met channels_redis's 5 s BZPOPMIN: idle pages died."""
    from channels.layers import get_channel_layer
    from channels.testing import WebsocketCommunicator

    from calls import live
    from tests.helpers.figures import sample

    application = redis_app
    page = WebsocketCommunicator(application, "/ws/admin/metrics/", headers=staff_headers)
    assert (await page.connect())[0]
    assert (await page.receive_json_from(timeout=5))["type"] == "snapshot"
    assert await page.receive_nothing(timeout=6.5)  # longer than a BZPOPMIN block, idle
    assert await live.publish_sample(get_channel_layer(), sample("CA1", 3))
    message = await page.receive_json_from(timeout=5)
    assert (message["type"], message["call_sid"]) == ("sample", "CA1")
    await page.disconnect()
