"""`manage.py simulate_call`: its argument parsing, and whole runs against a fake of our server."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from websockets.asyncio.server import ServerConnection

from telephony.management.commands.simulate_call import parse_dtmf
from telephony.testing.caller import read_wav_as_ulaw, write_ulaw_wav
from tests.helpers.fake_line import AUDIO, TOKEN, FakeServer, frame


def test_parse_dtmf() -> None:
    assert parse_dtmf("1.5:1") == (1.5, "1")
    assert parse_dtmf("0:#") == (0.0, "#")
    for bad in ("1.5", "x:1", "1:12", "1:a", "-1:1"):
        with pytest.raises(ValueError, match="SECONDS:DIGIT"):
            parse_dtmf(bad)


async def test_simulate_call_command_reports_and_saves_each_call(tmp_path: Path) -> None:
    async def script(server: FakeServer, ws: ServerConnection) -> None:
        for _ in range(5):
            await server.send_media(ws, frame(33))
        await server.send_mark(ws, "greeting")

    wav_in, wav_out = tmp_path / "say.wav", tmp_path / "heard.wav"
    write_ulaw_wav(wav_in, AUDIO[:1600])
    out = io.StringIO()
    async with FakeServer(script=script) as server:
        # The command runs its own event loop, so it gets a thread; the server stays on ours.
        await asyncio.to_thread(
            call_command,
            "simulate_call",
            "--url",
            server.base_url,
            "--auth-token",
            TOKEN,
            "--wav",
            str(wav_in),
            "--calls",
            "2",
            "--lead-silence",
            "0",
            "--tail-silence",
            "1.2",
            "--dtmf",
            "0.1:5",
            "--save-wav",
            str(wav_out),
            stdout=out,
        )
    text = out.getvalue()
    assert len(server.forms) == 2
    assert len([m for _, m in server.messages if m["event"] == "dtmf"]) == 2
    assert text.count(" ok sent=70 recv=5 ") == 2
    assert "[  1s] calls=2/2" in text
    assert "calls=2 ok=2 failed=0 sent=140 recv=10" in text
    assert "marks=2/2" in text
    for name in ("heard-1.wav", "heard-2.wav"):
        assert read_wav_as_ulaw(tmp_path / name) == frame(33) * 5


async def test_simulate_call_command_fails_when_a_call_fails() -> None:
    out = io.StringIO()
    async with FakeServer() as server:
        with pytest.raises(CommandError, match="1 of 1 calls failed"):
            await asyncio.to_thread(
                call_command,
                "simulate_call",
                f"--url={server.base_url}",
                "--auth-token=wrong",
                "--tail-silence=0.1",
                stdout=out,
            )
    assert "FAILED (voice webhook answered HTTP 403" in out.getvalue()
