"""The call page in real headless Chromium: the recording plays, a transcript line seeks, Hebrew
reads right to left, and the admin itself can be Hebrew.

Each server records a real call placed by the simulated caller; Hebrew transcripts are then
written for it, as the Google engine would have published them.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from telephony.testing.caller import dial
from telephony.testing.server_process import REPO_ROOT, ServerProcess
from tests.helpers.browser import CHROMIUM, CHROMIUM_ARGS
from tests.helpers.recorded_calls import recording_server
from tests.helpers.recordings import order_status_ulaw
from tests.reliability.helpers import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

PASSWORD = "pw-recordings"
HEBREW = "שלום, אני רוצה לבדוק את ההזמנה שלי מספר 4521."
ENGLISH = "and the delivery date, please"

SEED = """
from django.contrib.auth.models import Permission, User
from calls import services
from calls.models import Call
from telephony.turns.transcript import TranscriptEvent
call = Call.objects.get(call_sid={call_sid!r})
at = call.started_at.timestamp()
services.transcripts_create(events=[
    TranscriptEvent({call_sid!r}, "final", {hebrew!r}, 1, 1500, at + 3.9, latency_ms=400.0),
    TranscriptEvent({call_sid!r}, "final", {english!r}, 2, 4000, at + 5.6, latency_ms=400.0),
], call_ids={{{call_sid!r}: call.pk}})
User.objects.create_superuser("ops", "ops@example.com", {password!r})
staff = User.objects.create_user("viewer", password={password!r}, is_staff=True)
staff.user_permissions.add(Permission.objects.get(codename="view_call"))
print(call.pk)
"""


def recorded_call(server: ServerProcess) -> int:
    """Place a real call on `server`, wait for its recording, write its transcript; its pk."""
    call = dial(
        server.base_url,
        auth_token=settings.TWILIO_AUTH_TOKEN,
        audio=order_status_ulaw(),
        lead_silence_s=2.0,
        tail_silence_s=3.0,
    )
    # A thread of its own: Playwright's sync API owns this thread's event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        report = pool.submit(asyncio.run, call).result(timeout=60)
    assert report.ok, report.summary()
    assert wait_until(lambda: "recording stored" in server.log_text(), 10.0), server.log_text()
    seed = SEED.format(call_sid=report.call_sid, hebrew=HEBREW, english=ENGLISH, password=PASSWORD)
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", seed],
        cwd=REPO_ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return int(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def log_in(browser: Any, server: ServerProcess, username: str, next_url: str) -> Any:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.set_default_timeout(15_000)
    page.goto(f"{server.base_url}/admin/login/?next={next_url}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"**{next_url}")
    return page


# Where the ink of an element's screenshot lies: decoded by the browser itself (a canvas).
INK = """async (b64) => {
  const img = new Image();
  img.src = "data:image/png;base64," + b64;
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = img.width; canvas.height = img.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const px = ctx.getImageData(0, 0, img.width, img.height).data;
  let left = img.width, right = -1;
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < img.width; x++) {
      const i = 4 * (y * img.width + x);
      if (px[i] + px[i + 1] + px[i + 2] < 300) {
        left = Math.min(left, x);
        right = Math.max(right, x);
      }
    }
  }
  return [left, right, img.width];
}"""


def on_the_right(extent: tuple[int, int, int]) -> bool:
    """The ink ends at the box's right edge and starts well inside it."""
    first, last, width = extent
    return width - last < 12 and first > width / 3


def on_the_left(extent: tuple[int, int, int]) -> bool:
    """The ink starts at the box's left edge and ends well inside it."""
    first, last, width = extent
    return first < 12 and last < width * 2 / 3


def ink(page: Any, locator: Any, name: str, shots: Path) -> tuple[int, int, int]:
    """Screenshot `locator` (kept in `shots`) and return (first inked x, last inked x, width)."""
    png = locator.screenshot(path=str(shots / f"{name}.png"))
    return tuple(page.evaluate(INK, base64.b64encode(png).decode()))


def test_the_call_page_plays_seeks_and_reads_hebrew_right_to_left(
    server_factory: Callable[..., ServerProcess], tmp_path: Path, browser: Any
) -> None:
    from playwright.sync_api import expect

    server = recording_server(server_factory, tmp_path, GREETING_TEXT="Hello.")
    pk = recorded_call(server)
    page = log_in(browser, server, "ops", f"/admin/calls/call/{pk}/change/")
    audio = page.locator("#call-audio")
    expect(audio).to_have_count(1)
    page.wait_for_function("document.getElementById('call-audio').readyState >= 1")
    duration = page.evaluate("document.getElementById('call-audio').duration")
    assert 7.0 < duration < 8.5, duration  # 2 s + 2.1 s of speech + 3 s, as the call lasted

    # A click on the Hebrew line seeks to it (1.5 s) and plays on from there.
    hebrew = page.locator("li.cue.caller", has_text="שלום")
    hebrew.click()
    page.wait_for_function("document.getElementById('call-audio').currentTime > 1.9")
    state = page.evaluate(
        "(() => { const a = document.getElementById('call-audio');"
        " return [a.currentTime, a.paused, a.error && a.error.code]; })()"
    )
    assert state[1:] == [False, None], state  # playing, no decoding error
    assert 1.9 < state[0] < 4.0, state
    expect(hebrew).to_have_class("cue caller playing")
    page.locator("li.cue.caller", has_text="delivery").locator(".seek").click()
    page.wait_for_function("document.getElementById('call-audio').currentTime >= 4.0")
    assert page.evaluate("document.getElementById('call-audio').currentTime") < 6.0

    # Hebrew reads right to left in an English admin; English stays left to right.
    text = hebrew.locator(".text")
    assert text.evaluate("e => getComputedStyle(e).direction") == "rtl"
    english = page.locator("li.cue.caller", has_text="delivery").locator(".text")
    assert english.evaluate("e => getComputedStyle(e).direction") == "ltr"
    assert page.evaluate("document.documentElement.dir") == "ltr"
    shots = tmp_path / "shots"
    shots.mkdir()
    extent = ink(page, text, "hebrew-cue", shots)
    assert on_the_right(extent), extent
    extent = ink(page, english, "english-cue", shots)
    assert on_the_left(extent), extent
    # The conversation above the charts reads Hebrew the same way.
    said = page.locator("#conversation li.caller .text", has_text="שלום")
    extent = ink(page, said, "hebrew-conversation", shots)
    assert on_the_right(extent), extent
    page.screenshot(path=str(shots / "call-page.png"), full_page=True)

    # Captions come from the transcript; the downloads are there.
    vtt = page.request.get(f"{server.base_url}/admin/calls/call/{pk}/captions.vtt").text()
    assert HEBREW in vtt
    assert page.locator(".downloads a").count() == 4


def test_no_audio_for_anonymous_or_unpermitted_users_and_the_admin_in_hebrew(
    server_factory: Callable[..., ServerProcess], tmp_path: Path, browser: Any
) -> None:
    from playwright.sync_api import expect

    server = recording_server(server_factory, tmp_path, GREETING_TEXT="Hello.", LANGUAGE_CODE="he")
    pk = recorded_call(server)
    change = f"/admin/calls/call/{pk}/change/"

    page = log_in(browser, server, "ops", change)
    src = page.locator("#call-audio").get_attribute("src")
    assert src
    # The admin in Hebrew: Django's own translation, laid out right to left.
    assert page.evaluate("document.documentElement.dir") == "rtl"
    assert page.evaluate("document.documentElement.lang") == "he"
    assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"
    expect(page.locator("#user-tools")).to_contain_text("יציאה")  # "log out"
    english = page.locator("li.cue.caller", has_text="delivery").locator(".text")
    assert english.evaluate("e => getComputedStyle(e).direction") == "ltr"
    shots = tmp_path / "shots"
    shots.mkdir()
    page.screenshot(path=str(shots / "hebrew-admin.png"), full_page=True)
    # The header reads right to left: the site's name on the right, the user's tools left.
    name_box = page.locator("#site-name").bounding_box()
    tools_box = page.locator("#user-tools").bounding_box()
    assert name_box["x"] > tools_box["x"] + tools_box["width"], (name_box, tools_box)
    # A phone number keeps its "+" in front, in a right-to-left page.
    caller = page.locator(".field-from_number .readonly")
    assert caller.evaluate("e => getComputedStyle(e).direction") == "ltr"
    first_char = caller.evaluate(
        "e => { const r = document.createRange(); r.setStart(e.firstChild, 0);"
        " r.setEnd(e.firstChild, 1); return r.getBoundingClientRect().x; }"
    )
    assert first_char <= caller.bounding_box()["x"] + 2  # the "+" is the leftmost character

    # Nobody logged in: the audio URL leads to the login page, not to audio.
    anonymous = browser.new_page()
    response = anonymous.goto(f"{server.base_url}{src}")
    assert response is not None
    assert "/admin/login/" in anonymous.url
    assert not response.headers.get("content-type", "").startswith("audio/")

    # Staff who may view calls but not listen: no player, and the audio URL says 403.
    viewer = log_in(browser, server, "viewer", change)
    expect(viewer.locator("#call-audio")).to_have_count(0)
    expect(viewer.locator("#no-listen")).to_have_count(1)
    assert viewer.request.get(f"{server.base_url}{src}").status == 403
