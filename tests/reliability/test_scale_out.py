"""Scale-out: two server processes behind the recipe's nginx, sharing PostgreSQL and Redis.

nginx runs the site deploy/ ships (tests/helpers/nginx.py), over TLS, in front of two uvicorn
processes started as the systemd unit starts them, with the production settings. A deploy
drains one of them with deploy/drain (out of rotation, its calls left to end), restarts it and
puts it back with deploy/undrain, while the other takes the new calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from websockets.asyncio.client import connect

from telephony.testing.caller import new_sid, write_ulaw_wav
from telephony.testing.server_process import REPO_ROOT, ServerProcess, free_port, stop_server
from tests.fakes.google_speech import FakeSpeechServer, speak
from tests.helpers.nginx import DEPLOY, Callers, Nginx, client_context, need_nginx, run_nginx
from tests.reliability.conftest import once_per_run
from tests.reliability.helpers import (
    answer,
    call_rows,
    close_code,
    final_texts,
    open_stream,
    start,
    wait_until,
)

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

# What each caller says: three utterances the fake Google recognizes.
SCRIPT = [["שלום", "אני", "רוצה", "לקבוע", "תור"], ["מחר", "בבוקר"], ["תודה", "רבה"]]
STARTED = re.compile(r"call=(CA\w+) stream \w+ started")


def staff_session(env: dict[str, str]) -> str:
    """Create a staff user who may view calls, logged in: return the session key."""
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", STAFF_SESSION],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return result.stdout.strip().splitlines()[-1]


def finals_logged(log: str, call_sid: str) -> list[str]:
    return re.findall(rf"\[FINAL\] call={call_sid} (.*) \(latency_ms=", log)


class LivePage:
    """The admin's live page, open through nginx in a thread of its own: what it was sent."""

    def __init__(self, nginx: Nginx, tls: ssl.SSLContext, session_key: str) -> None:
        self._seen: dict[str, set[str]] = defaultdict(set)  # message type -> CallSids
        self._lock = threading.Lock()
        self.snapshot: dict[str, Any] | None = None
        self._url = nginx.origin.replace("https://", "wss://") + "/ws/admin/metrics/"
        self._headers = {"Cookie": f"sessionid={session_key}", "Origin": nginx.origin}
        self._tls = tls
        self._stop = threading.Event()
        self._opened = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="test-live-page", daemon=True)

    def seen(self, kind: str) -> set[str]:
        """The calls it was sent a message of this type about ("started", "sample", "ended")."""
        with self._lock:
            return set(self._seen[kind])

    def open(self) -> LivePage:
        self._thread.start()
        assert self._opened.wait(10), self._error
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        assert self._error is None, self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._watch())
        except BaseException as exc:
            self._error = exc
            self._opened.set()

    async def _watch(self) -> None:
        async with connect(
            self._url, additional_headers=self._headers, ssl=self._tls, proxy=None
        ) as live:
            self.snapshot = json.loads(await live.recv())
            self._opened.set()
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    message = json.loads(await asyncio.wait_for(live.recv(), 0.2))
                    if "call_sid" in message:
                        with self._lock:
                            self._seen[message["type"]].add(message["call_sid"])


def where(servers: dict[str, ServerProcess], text: str) -> list[str]:
    """The names of the servers whose log holds `text`."""
    return [name for name, server in servers.items() if text in server.log_text()]


def test_a_deploy_drains_and_restarts_one_process_while_the_other_serves(
    pg_database: str,
    redis_env: dict[str, str],
    server_factory: Callable[..., ServerProcess],
    tmp_path: Path,
) -> None:
    need_nginx()
    ports = {"A": free_port(), "B": free_port()}
    auth = settings.TWILIO_AUTH_TOKEN
    wav = tmp_path / "caller.wav"
    write_ulaw_wav(wav, speak(SCRIPT))
    with (
        FakeSpeechServer(endpoint_ms=500) as speech,
        run_nginx(tmp_path / "nginx", list(ports.values())) as nginx,
    ):
        env = {
            **nginx.app_env(auth),
            "DATABASE_URL": pg_database,
            **redis_env,
            "STT_ENGINE": "google",
            "GOOGLE_SPEECH_EMULATOR_HOST": speech.host,
            "GREETING_TEXT": "Hi.",
        }
        servers = {
            "A": server_factory(env=env, port=ports["A"], server="uvicorn"),
            "B": server_factory(env=env, port=ports["B"], server="uvicorn", migrate=False),
        }
        tls = client_context(nginx.cert)
        session_key = staff_session(servers["A"].env)
        scripts = {**nginx.script_env(), "DRAIN_WAIT_S": "60"}

        # A stream token is spent once, whichever process it reaches (Redis).
        replayed, codes = asyncio.run(replay_a_token(list(ports.values()), nginx.origin, auth, tls))
        # The token that A's stream spent is refused by B, and again by A; a fresh token from a
        # replayed webhook is refused by B too: one live stream per call in the deployment.
        assert codes == [None, 4008, 4008, 4008], codes
        assert "stream refused: another stream of this call is live" in servers["B"].log_text()

        # Four calls, spread over both processes.
        first = Callers("first", 4, nginx, wav, auth_token=auth, ramp_s=3.0, tail_s=2.5)

        def streaming() -> dict[str, set[str]]:
            return {
                name: set(STARTED.findall(server.log_text())) - {replayed}
                for name, server in servers.items()
            }

        assert wait_until(lambda: sum(map(len, streaming().values())) == 4, 30.0), streaming()
        first_on = streaming()
        # least_conn spreads them over both
        assert [len(first_on["A"]) > 0, len(first_on["B"]) > 0] == [True, True], first_on

        # Deploy, step 1: A out of rotation; its calls go on, new ones go to B.
        workers = nginx.workers()
        drain_began = time.monotonic()
        drain = subprocess.Popen(
            [str(DEPLOY / "drain"), str(ports["A"])],
            env=scripts, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert drain.stdout is not None
        said = drain.stdout.readline()
        assert said == f"drain: 127.0.0.1:{ports['A']} out of rotation\n", said
        assert f"server 127.0.0.1:{ports['A']} down;" in nginx.upstream()
        assert wait_until(lambda: (now := nginx.workers()) and not now & workers, 10.0)
        page = LivePage(nginx, tls, session_key).open()
        assert page.snapshot is not None
        assert page.snapshot["type"] == "snapshot"
        # It starts from the calls in progress on both processes (read from PostgreSQL).
        in_progress = {call["call_sid"] for call in page.snapshot["calls"]}
        assert in_progress == first_on["A"] | first_on["B"], in_progress
        assert where(servers, '"WebSocket /ws/admin/metrics/" [accepted]') == ["B"]
        during = Callers("during-drain", 2, nginx, wav, auth_token=auth, ramp_s=0.5, tail_s=2.5)
        said, nginx_said = drain.communicate(timeout=90)
        assert drain.returncode == 0, (said, nginx_said)
        assert said == f"drain: no call left on {ports['A']}\n", said
        drained_s = time.monotonic() - drain_began
        print(f"\ndrain: A's {len(first_on['A'])} call(s) ended {drained_s:.1f} s into the drain")

        # Step 2: restart A (SIGTERM, as systemctl restart sends) and put it back.
        restarted_at = datetime.now(UTC)
        stop_server(servers["A"].process)
        servers["A2"] = server_factory(env=env, port=ports["A"], server="uvicorn", migrate=False)
        workers = nginx.workers()
        undrain = subprocess.run(
            [str(DEPLOY / "undrain"), str(ports["A"])],
            env=scripts, capture_output=True, text=True, timeout=150, check=False,
        )  # fmt: skip
        assert undrain.returncode == 0, undrain.stderr
        assert undrain.stdout == f"undrain: 127.0.0.1:{ports['A']} back in rotation\n"
        assert f"server 127.0.0.1:{ports['A']};" in nginx.upstream().splitlines()
        assert wait_until(lambda: (now := nginx.workers()) and not now & workers, 10.0)
        after = Callers("after-restart", 2, nginx, wav, auth_token=auth, ramp_s=0.5, tail_s=2.5)

        batches = {"first": first.wait(), "during": during.wait(), "after": after.wait()}
        # The live page, open on B, shows the calls of both processes (through Redis).
        everyone = {c.call_sid for calls in batches.values() for c in calls}
        wait_until(lambda: everyone <= page.seen("ended"), 5.0)
        page.close()

    placed = [call for calls in batches.values() for call in calls]
    # No call lost: every one connected, streamed and was closed cleanly by its caller.
    assert [c for c in placed if not c.ok] == [], placed
    sids = [c.call_sid for c in placed]
    answered = {s: where(servers, f"call {s} answered") for s in sids}
    streamed = {s: where(servers, f"call={s} stream ") for s in sids}
    print(f"\nwebhook -> stream: {[answered[s] + streamed[s] for s in sids]}")
    assert all(len(names) == 1 for names in [*answered.values(), *streamed.values()])
    # While A was drained, webhooks and streams all went to B; after its restart, A took calls.
    assert {(answered[c.call_sid][0], streamed[c.call_sid][0]) for c in batches["during"]} == {
        ("B", "B")
    }
    assert any(streamed[c.call_sid] == ["A2"] for c in batches["after"])
    # Answered by one process, streamed by the other, both ways (least_conn alternates on ties).
    pairs = {(answered[s][0], streamed[s][0]) for s in sids}
    assert {("A", "B"), ("B", "A")} <= pairs, pairs

    rows = wait_until(
        lambda: (
            (r := call_rows(pg_database, sids))
            and len(r) == len(sids)
            and all(row["status"] == "ended" for row in r.values())
            and r
        ),
        10.0,
        0.2,
    )
    assert rows, call_rows(pg_database, sids)
    pids = {name: server.process.pid for name, server in servers.items()}
    host = socket.gethostname()
    for call in placed:
        row, on = rows[call.call_sid], streamed[call.call_sid][0]
        assert row["end_reason"] == "stop", row  # ended by its caller, not by the restart
        assert row["from_number"] == "+15005550006"
        assert row["answered_at"] is not None
        # Every frame sent reached the process and was written to STT ...
        assert row["frames_in"] == call.frames_sent == row["extra"]["frames_written"], row
        # ... and every FINAL it published is stored.
        finals = finals_logged(servers[on].log_text(), call.call_sid)
        assert final_texts(pg_database, call.call_sid) == finals
        assert row["finals"] == len(finals) > 0, finals
        assert row["process"] == f"{host}:{pids[on]}"
        assert row["go"] is not None  # judged from samples that both processes wrote
    # A's calls had all ended (drained) before its restart.
    assert all(rows[s]["ended_at"] < restarted_at for s in first_on["A"])
    opened_after = {c.call_sid for c in batches["during"] + batches["after"]}
    assert opened_after <= page.seen("started"), page.seen("started")
    assert everyone <= page.seen("sample"), page.seen("sample")
    assert everyone <= page.seen("ended"), page.seen("ended")


async def replay_a_token(
    ports: list[int], public: str, auth: str, tls: ssl.SSLContext
) -> tuple[str, list[int | None]]:
    """Answer a call, stream it on A, then replay its start on B and on A: its CallSid, codes."""
    call_sid = new_sid("CA")
    twiml = await answer(public, call_sid, auth, tls=tls)
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
        fresh = await answer(public, call_sid, auth, tls=tls)  # the webhook replayed: a new token
        assert fresh.parameters != twiml.parameters
        async with open_stream(twiml.url, auth, connect_to=direct[1]) as second:
            await second.send(start(call_sid, new_sid("MZ"), fresh.parameters))
            codes.append((await close_code(second, 5.0))[0])
    return call_sid, codes


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
