"""A real call with STT_ENGINE=google and TTS_ENGINE=google, the fake Google servers on loopback."""

import asyncio
import re

from django.conf import settings

from telephony.testing.caller import dial
from tests.fakes.google_speech import FakeSpeechServer, script_words, speak
from tests.fakes.google_tts import FakeTtsServer, render
from tests.helpers.serverlog import wait_for

GREETING = "שלום, במה אפשר לעזור?"
SCRIPT = [["שלום", "אני", "רוצה", "לקבוע", "תור"], ["מחר", "בבוקר"], ["תודה", "רבה"]]


def transcript(log: str, call: str) -> list[str]:
    """Each utterance's last word on the line (its FINAL, or the revision of it), in order."""
    said: dict[int, str] = {}
    for match in re.finditer(
        rf"(FINAL|REVISED)\] call={call} (.*?)(?: \(latency_ms=.*)?$", log, re.M
    ):
        said[len(said)] = match.group(2)
    return [w for text in said.values() for w in text.split()]


def test_a_hebrew_call_through_google(server_factory, tmp_path) -> None:
    with FakeSpeechServer(endpoint_ms=500) as speech_fake, FakeTtsServer() as tts_fake:
        server = server_factory(
            env={
                "STT_ENGINE": "google",
                "TTS_ENGINE": "google",
                "GOOGLE_SPEECH_EMULATOR_HOST": speech_fake.host,
                "GOOGLE_TTS_EMULATOR_HOST": tts_fake.host,
                "GREETING_TEXT": GREETING,
                "TTS_CACHE_DIR": str(tmp_path / "tts-cache"),
            }
        )
        report = asyncio.run(
            dial(
                server.base_url,
                auth_token=settings.TWILIO_AUTH_TOKEN,
                audio=speak(SCRIPT),
                lead_silence_s=1.0,
                tail_silence_s=2.0,
                save_received=True,
            )
        )
        assert report.error is None, report.error
        call = report.call_sid
        log = wait_for(server, f"call={call} ended (stop)", timeout_s=8.0)

        # Caller's words came back through Google streaming as partials and FINALs.
        assert f"🟡 [PARTIAL] call={call}" in log
        assert transcript(log, call) == script_words(SCRIPT), log[-3000:]
        (stream, *_) = speech_fake.streams
        assert stream.config.config.language_code == "he-IL"
        assert stream.config.config.use_enhanced is True
        assert max(stream.request_sizes) <= 25 * 1024

        # The greeting was synthesized once by Google TTS and played without its WAV header.
        greetings = [r for r in tts_fake.requests if r.text == GREETING]
        assert len(greetings) == 1
        assert greetings[0].voice == settings.GOOGLE_TTS_VOICE
        assert render(GREETING) in report.received_audio
        assert b"RIFF" not in report.received_audio
        assert "threads still alive" not in log
