"""A real call: daphne on loopback, dialled by the simulated Twilio caller."""

import asyncio
import re

from django.conf import settings

from telephony.management.commands.simulate_call import lead_silence_s
from telephony.testing.caller import dial
from tests.helpers.recordings import order_status_ulaw
from tests.helpers.serverlog import figures, rms, wait_for


def test_a_call_from_webhook_to_final(server_factory):
    server = server_factory(env={"STT_ENGINE": "whisper", "TTS_ENGINE": "espeak"})
    report = asyncio.run(
        dial(
            server.base_url,
            auth_token=settings.TWILIO_AUTH_TOKEN,
            audio=order_status_ulaw(),
            lead_silence_s=lead_silence_s(None),  # listen to the greeting, then speak
            tail_silence_s=5.0,  # room for whisper's own final on a busy machine
            save_received=True,
        )
    )
    assert report.error is None, report.error
    assert report.close_code == 1000
    call = report.call_sid
    log = wait_for(server, f"call={call} ended (stop)")

    # The transcript: the last word on the utterance (FINAL or its revision) has the words.
    said = [m.group(2) for m in re.finditer(rf"(FINAL|REVISED)\] call={call} (.*)", log)]
    assert said, log[-3000:]
    heard = said[-1].lower()
    assert "status" in heard, said
    assert "order" in heard, said
    assert f"🟡 [PARTIAL] call={call}" in log

    # The operators' per-second lines: every frame written, queues short, on cadence.
    rx, tx = figures(log, call, "RX"), figures(log, call, "TX")
    assert len(rx) >= 5
    assert all(row["drops"] == 0 for row in rx)
    assert all(row["q"] <= 20 for row in rx)
    assert all(45 <= row["fps_in"] <= 55 for row in rx[1:-1])
    write_ms = sorted(row["write_ms"] for row in rx)
    assert write_ms[len(write_ms) // 2] < 1.0
    assert all(row["drops"] == 0 for row in tx)
    assert all(row["q"] <= 20 for row in tx)
    assert all(45 <= row["fps"] <= 55 for row in tx[1:-1])
    ended = re.search(rf"call={call} ended \(stop\): in=(\d+) written=(\d+)", log)
    assert ended.group(1) == ended.group(2) == str(report.frames_sent)

    # The greeting was heard: its end mark came back, and its audio is in what the caller got.
    assert f"call={call} greeting played" in log
    assert any(name.startswith("greeting@end") for name in report.echoed_marks)
    assert report.clears_received == 0
    first_two_seconds = report.received_audio[: 2 * 8000]
    assert rms(first_two_seconds) > 300  # speech, not silence (silence is 0)
    assert report.first_media_ms is not None
    assert report.first_media_ms < 200

    # No thread outlives its call.
    assert "threads still alive" not in log
