"""`manage.py simulate_call`: dial the line like Twilio and report what came back."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from telephony.testing.caller import (
    CallReport,
    calls_summary,
    dial_many,
    greeting_s,
    progress_line,
    read_wav_as_ulaw,
    run,
    speech_audio,
    write_ulaw_wav,
)

DEFAULT_TEXT = "Hello, I would like to check the status of my order, please."


def parse_dtmf(spec: str) -> tuple[float, str]:
    """Parse `SECONDS:DIGIT` (e.g. `1.5:1`) into a key press."""
    seconds, sep, digit = spec.partition(":")
    try:
        at = float(seconds)
    except ValueError:
        at = -1.0
    if not sep or at < 0 or len(digit) != 1 or digit not in "0123456789*#":
        raise ValueError(f"--dtmf wants SECONDS:DIGIT (digit 0-9, * or #), got {spec!r}")
    return at, digit


def wav_path_for(path: Path, index: int, calls: int) -> Path:
    """Return where call `index` saves its audio: `path` itself, or `path` with `-N` when many."""
    if calls == 1:
        return path
    return path.with_name(f"{path.stem}-{index + 1}{path.suffix}")


class Command(BaseCommand):
    help = "Place simulated Twilio calls against the server and report what came back."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url",
            default=settings.PUBLIC_BASE_URL,
            help="Server origin the voice webhook is POSTed to (default: PUBLIC_BASE_URL).",
        )
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--text", help="What the caller says (rendered with espeak).")
        source.add_argument("--wav", type=Path, help="A WAV file the caller plays instead.")
        parser.add_argument("--calls", type=int, default=1, help="Concurrent calls (default 1).")
        parser.add_argument(
            "--ramp", type=float, default=0.0, help="Spread call starts over this many seconds."
        )
        parser.add_argument("--save-wav", type=Path, help="Save the audio each call received.")
        parser.add_argument(
            "--lead-silence",
            type=float,
            default=None,
            help="Seconds of silence before speaking (default: listen to the configured "
            "greeting first, as callers do, since talking over it interrupts it).",
        )
        parser.add_argument(
            "--tail-silence",
            type=float,
            default=4.0,
            help="Seconds the caller keeps listening after speaking (default 4).",
        )
        parser.add_argument(
            "--auth-token",
            default=settings.TWILIO_AUTH_TOKEN,
            help="Twilio auth token to sign with (default: TWILIO_AUTH_TOKEN).",
        )
        parser.add_argument(
            "--dtmf",
            action="append",
            default=[],
            metavar="SECONDS:DIGIT",
            help="Press a key at that time into the stream, e.g. --dtmf 1.5:1 (repeatable).",
        )
        parser.add_argument(
            "--speed", type=float, default=1.0, help="Send this many times faster than real time."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        calls: int = options["calls"]
        if calls < 1:
            raise CommandError("--calls must be at least 1")
        try:
            dtmf = [parse_dtmf(spec) for spec in options["dtmf"]]
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        audio = self._audio(options)
        self.stdout.write(
            f"dialing {options['url']} x{calls}: {len(audio) / 8000:.1f} s of speech, "
            f"{options['tail_silence']:.1f} s listening"
        )
        reports = run(
            self._run(
                calls,
                options["url"],
                ramp_s=options["ramp"],
                auth_token=options["auth_token"],
                audio=audio,
                lead_silence_s=lead_silence_s(options["lead_silence"]),
                tail_silence_s=options["tail_silence"],
                dtmf=dtmf,
                save_received=options["save_wav"] is not None,
                speed=options["speed"],
            )
        )
        for index, report in enumerate(reports):
            self.stdout.write(report.summary())
            if options["save_wav"] is not None and report.received_audio:
                path = wav_path_for(options["save_wav"], index, calls)
                write_ulaw_wav(path, report.received_audio)
                self.stdout.write(f"  saved {len(report.received_audio) / 8000:.1f} s to {path}")
        self.stdout.write(calls_summary(reports))
        failed = [r for r in reports if not r.ok]
        if failed:
            raise CommandError(f"{len(failed)} of {len(reports)} calls failed")

    def _audio(self, options: dict[str, Any]) -> bytes:
        """Return what the caller says: a WAV file, or text rendered with espeak."""
        if options["wav"] is not None:
            try:
                return read_wav_as_ulaw(options["wav"])
            except (OSError, EOFError, ValueError) as exc:  # wave.Error is an Exception subclass
                raise CommandError(f"cannot read {options['wav']}: {exc}") from exc
        return speech_audio(options["text"] or DEFAULT_TEXT)

    async def _run(self, calls: int, url: str, **kwargs: Any) -> list[CallReport]:
        """Place the calls while printing one progress line a second."""
        live: dict[str, CallReport] = {}

        def on_progress(report: CallReport) -> None:
            live[report.call_sid] = report

        printer = asyncio.create_task(self._print_progress(live, calls), name="progress")
        try:
            return await dial_many(calls, url, on_progress=on_progress, **kwargs)
        finally:
            printer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await printer

    async def _print_progress(self, live: dict[str, CallReport], calls: int) -> None:
        """Print totals over the calls in progress, once a second."""
        seconds = 0
        while True:
            await asyncio.sleep(1.0)
            seconds += 1
            self.stdout.write(progress_line(seconds, list(live.values()), calls))


def lead_silence_s(option: float | None) -> float:
    """The silence before the caller speaks: the greeting's length plus a breath, unless given.

    Callers listen to the greeting first, since talking over it interrupts it (barge-in).
    """
    if option is not None:
        return option
    if not settings.GREETING_TEXT:
        return 0.5
    return greeting_s(settings.GREETING_TEXT) + 0.7
