"""Turn-taking on a real server: barge-in, marks telling what was heard, replies, DTMF."""

import asyncio
import re

from django.conf import settings

from telephony.testing.caller import dial, speech_audio
from tests.helpers.recordings import order_status_ulaw
from tests.helpers.serverlog import rms, wait_for

LONG_GREETING = (
    "Hello and welcome to the order line. Please listen carefully, as our options have changed. "
    "You can ask about an order, a delivery, or a refund, at any time."
)


def test_caller_talking_over_the_greeting_stops_it(server_factory):
    server = server_factory(
        env={"STT_ENGINE": "none", "GREETING_TEXT": LONG_GREETING, "BARGE_IN_MIN_SPEECH_MS": "300"}
    )
    report = asyncio.run(
        dial(
            server.base_url,
            auth_token=settings.TWILIO_AUTH_TOKEN,
            audio=speech_audio("Wait, I want to talk to someone about my delivery."),
            lead_silence_s=2.5,
            tail_silence_s=1.5,
            save_received=True,
        )
    )
    assert report.error is None, report.error
    call = report.call_sid
    log = wait_for(server, f"call={call} ended (stop)")
    assert report.clears_received == 1
    cut = re.search(rf"call={call} barge-in: greeting cut after (\d+) of (\d+) ms heard", log)
    assert cut, log[-2000:]
    heard, total = int(cut.group(1)), int(cut.group(2))
    assert total > 6000  # the greeting is long
    assert heard == 2000  # marks each second: the caller had heard 2 s when it spoke at 2.5 s
    # marks are fed in with the audio: the clear cut the greeting before its later marks went out
    assert report.echoed_marks == ["greeting@1000", "greeting@2000"]
    assert f"call={call} greeting played" not in log
    # after the clear only silence reaches the caller: the rest of the greeting is gone
    after_clear = report.received_audio[int(3.2 * 8000) :]
    assert rms(after_clear) < 50
    assert rms(report.received_audio[: 2 * 8000]) > 300


def test_the_echo_hook_answers_a_final_and_a_key(server_factory):
    server = server_factory(
        # A local FINAL waits (long enough even on a busy machine) for whisper's own final, so the
        # reply echoes the engine's text rather than the stale partial the local FINAL was made of.
        env={
            "STT_ENGINE": "whisper",
            "REPLY_HOOK": "echo",
            "GREETING_TEXT": "Hi.",
            "REPLY_SETTLE_MS": "6000",
        }
    )
    report = asyncio.run(
        dial(
            server.base_url,
            auth_token=settings.TWILIO_AUTH_TOKEN,
            audio=order_status_ulaw(),
            lead_silence_s=1.0,
            tail_silence_s=7.0,
            dtmf=[(8.0, "7")],
            save_received=True,
        )
    )
    assert report.error is None, report.error
    call = report.call_sid
    log = wait_for(server, f"call={call} ended (stop)")
    assert f"call={call} DTMF 7" in log
    replies = re.findall(rf"call={call} reply prompt\d+: (.*)", log)
    assert any(r.startswith("You said:") and "order" in r.lower() for r in replies), replies
    assert "You pressed 7." in replies
    # the replies were spoken: audio after the caller's words is not silence
    assert rms(report.received_audio[int(3.5 * 8000) :]) > 300
