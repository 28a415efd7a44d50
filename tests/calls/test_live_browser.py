"""The live page in real headless Chromium, against a real server, fed through Redis.

The server (daphne, its own SQLite file) and this test share a Redis channel layer under a
prefix of their own, so the test publishes exactly as a call session in another process would.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from calls import live
from telephony.testing.server_process import REPO_ROOT, ServerProcess
from tests.helpers.browser import CHROMIUM, CHROMIUM_ARGS
from tests.helpers.figures import sample

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.redis]

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
HOT = re.compile(r"\bhot\b")
PASSWORD = "pw-live-page"

# Written into the server's database before the page opens: a running call for the snapshot.
SEED = """
from django.contrib.auth.models import User
from django.utils import timezone
from calls import services
from calls.rows import CallAnswer, StreamStart
from telephony.metrics.meters import SecondSample
User.objects.create_superuser("ops", "ops@example.com", {password!r})
now = timezone.now()
call = services.call_stream_started(
    StreamStart(call_sid="CA-snap", stream_sid="MZ-snap", started_at=now)
)
services.call_answered(CallAnswer(call_sid="CA-snap", from_number="+972509998877"))
services.metric_samples_create(
    samples=[SecondSample(call_sid="CA-snap", second=s, at=now.timestamp(), fps_in=50, rx_q=4,
             rx_drops=0, rx_drops_total=0, write_ms=0.3, tx_fps=50, tx_q=6, tx_drops=0,
             tx_drops_total=0, send_q=1) for s in range(3)],
    call_ids={{"CA-snap": call.pk}},
)
"""


def redis_answers() -> bool:
    host, port = REDIS_URL.split("//")[1].split("/")[0].split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def prefix() -> str:
    return f"test-live-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def server(server_factory: Callable[..., ServerProcess], prefix: str) -> ServerProcess:
    if not redis_answers():
        pytest.skip(f"no Redis at {REDIS_URL}")
    server = server_factory(
        env={"REDIS_URL": REDIS_URL, "CHANNELS_PREFIX": prefix, "STT_ENGINE": "none"}
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SEED.format(password=PASSWORD)],
        cwd=REPO_ROOT,
        env=server.env,
        check=True,
        timeout=60,
    )
    return server


@pytest.fixture
def publish(prefix: str) -> Callable[[Callable[[Any], Coroutine[Any, Any, bool]]], None]:
    """Publish as a call session in another process would: through Redis, in its own loop."""
    from channels_redis.core import RedisChannelLayer

    def run(make: Callable[[Any], Coroutine[Any, Any, bool]]) -> None:
        outcome: list[bool] = []

        async def send() -> None:
            layer = RedisChannelLayer(hosts=[REDIS_URL], prefix=prefix)
            outcome.append(await make(layer))
            await layer.close_pools()

        # Its own thread: Playwright's sync API owns this thread's event loop.
        thread = threading.Thread(target=asyncio.run, args=(send(),), name="test-publisher")
        thread.start()
        thread.join(10)
        assert outcome == [True]

    return run


@pytest.fixture
def page(server: ServerProcess) -> Iterator[Any]:
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


def test_the_live_page_follows_a_call_from_start_to_end(
    server: ServerProcess, page: Any, publish: Callable[..., None]
) -> None:
    from playwright.sync_api import expect

    page.goto(f"{server.base_url}/admin/login/?next=/admin/calls/call/live/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/calls/call/live/")
    expect(page.locator("#live-status")).to_have_text("live")

    # The snapshot: the call already running when the page opened, with its figures.
    snap = page.locator('tr[data-call="CA-snap"]')
    expect(snap.locator('[data-field="from_number"]')).to_have_text("+972509998877")
    expect(snap.locator('[data-field="rx_q"]')).to_have_text("4")
    expect(snap.locator("polyline").first).to_have_attribute("points", re.compile(r"\d"))

    # A call starts in "another process" and reports its seconds.
    publish(lambda layer: live.publish_started(layer, call_sid="CA-e2e", stream_sid="MZ", at=0))
    row = page.locator('tr[data-call="CA-e2e"]')
    expect(row).to_have_count(1)
    publish(lambda layer: live.publish_sample(layer, sample("CA-e2e", 1, fps_in=50, rx_q=3)))
    expect(row.locator('[data-field="fps_in"]')).to_have_text("50")
    expect(row.locator('[data-field="rx_q"]')).to_have_text("3")
    expect(row.locator('[data-field="rx_drops"]')).not_to_have_class(HOT)

    publish(
        lambda layer: live.publish_sample(
            layer,
            sample("CA-e2e", 2, fps_in=47, rx_q=12, rx_drops=3, rx_drops_total=3, write_ms=1.5),
        )
    )
    expect(row.locator('[data-field="fps_in"]')).to_have_text("47")
    expect(row.locator('[data-field="rx_q"]')).to_have_text("12")
    expect(row.locator('[data-field="write_ms"]')).to_have_text("1.50")
    expect(row.locator('[data-field="rx_drops"]')).to_have_class(HOT)  # drops stand out
    expect(row.locator('[data-field="rx_drops_total"]')).to_have_class(re.compile(r"\bwarn\b"))
    points = row.locator("polyline").first.get_attribute("points") or ""
    assert len(points.split()) == 2  # the trend has both seconds
    expect(page.locator("#live-count")).to_have_text("2 running calls")

    # The call ends: struck through, then gone; the other call stays.
    publish(lambda layer: live.publish_ended(layer, call_sid="CA-e2e", reason="stop", at=0))
    expect(row).to_have_class(re.compile(r"\bended\b"))
    expect(row).to_have_count(0)
    expect(snap).to_have_count(1)
    expect(page.locator("#live-count")).to_have_text("1 running call")


# What a page does to read the live figures: open the socket, keep what it is told.
READ_FIGURES = """
async (url) => await new Promise((resolve) => {
  const seen = [];
  const ws = new WebSocket(url);
  ws.onmessage = (event) => seen.push(JSON.parse(event.data).type);
  ws.onclose = (event) => resolve({opened: seen.length > 0, seen, code: event.code});
  setTimeout(() => { ws.close(); }, 3000);
})
"""


@pytest.fixture
def other_site() -> Iterator[str]:
    """A page on another port of the same host: Chromium sends it the admin's cookies too."""
    import http.server

    from telephony.testing.server_process import free_port

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><title>another site</title><p>hello"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Page)
    thread = threading.Thread(target=httpd.serve_forever, name="other-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_page_on_another_port_of_the_host_cannot_read_the_figures(
    server: ServerProcess, page: Any, other_site: str
) -> None:
    """Found by review: with ALLOWED_HOSTS at its default `*`, any origin was let in."""
    page.goto(f"{server.base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    socket_url = server.base_url.replace("http://", "ws://") + "/ws/admin/metrics/"

    # The admin's own page: the staff member's session reads the figures.
    own = page.evaluate(READ_FIGURES, socket_url)
    assert own["seen"][:1] == ["snapshot"], own

    # Another port of the same host, in the same browser (so with the same cookies): refused.
    page.goto(other_site)
    other = page.evaluate(READ_FIGURES, socket_url)
    assert other == {"opened": False, "seen": [], "code": 1006}, other
