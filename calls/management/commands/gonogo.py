"""`manage.py gonogo`: the 2-minute GO/NO-GO check an operator runs before a deploy.

It dials the server with calls that speak, prints the server's per-second figures as they come,
and judges them by the GO/NO-GO rules: GO or NO-GO with each reason, where to look, and the log
lines that show it. Exit status 0 on GO, 1 on NO-GO. The figures are read from the database the
server writes (`calls.gonogo_run` says why): point the command at the same DATABASE_URL as the
server, or use `--spawn` to start a server on this database.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from calls.gonogo_console import print_verdict
from calls.gonogo_run import UTTERANCES, CheckError, CheckOptions, run_check
from telephony.metrics.gonogo import Thresholds


class Command(BaseCommand):
    help = (
        "Dial the server with speaking calls and judge its own per-second figures by the "
        "GO/NO-GO rules. Exit 0 on GO, 1 on NO-GO."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        where = parser.add_mutually_exclusive_group()
        where.add_argument(
            "--url",
            default=settings.PUBLIC_BASE_URL,
            help="The running server's origin (default: PUBLIC_BASE_URL). It must write to "
            "this command's database (DATABASE_URL): the figures are read from there.",
        )
        where.add_argument(
            "--spawn",
            action="store_true",
            help="Start a server (daphne, this environment and database) for the check.",
        )
        parser.add_argument("--duration", type=float, default=120.0, help="Seconds per call.")
        parser.add_argument("--calls", type=int, default=1, help="Concurrent calls (default 1).")
        parser.add_argument(
            "--ramp",
            type=float,
            default=None,
            help="Spread call starts over this many seconds (default: 20 ms per call).",
        )
        parser.add_argument(
            "--text",
            action="append",
            default=[],
            help="What the callers say, in turn (repeatable; default: four order-line phrases).",
        )
        parser.add_argument(
            "--wav",
            action="append",
            default=[],
            help="What the callers say, from WAV files, in turn (repeatable; instead of --text).",
        )
        parser.add_argument(
            "--pause", type=float, default=2.0, help="Silence after each utterance (s)."
        )
        parser.add_argument(
            "--lead-silence",
            type=float,
            default=None,
            help="Listening before the first utterance (default: the greeting's length).",
        )
        parser.add_argument(
            "--speed",
            type=float,
            default=1.0,
            help="Inbound rate as a multiple of real time: a drill (0.8 sends 40 fps: NO-GO).",
        )
        parser.add_argument(
            "--transcripts",
            choices=["auto", "yes", "no"],
            default="auto",
            help="Require a PARTIAL and a FINAL per call (auto: unless the server's STT "
            "engine is `none`, which recognizes nothing by design).",
        )
        parser.add_argument(
            "--settle",
            type=float,
            default=10.0,
            help="Seconds to wait after hanging up for the calls' last rows.",
        )
        t = Thresholds()
        parser.add_argument("--fps-tolerance", type=int, default=t.fps_tolerance)
        parser.add_argument("--fps-on-rate-share", type=float, default=t.fps_on_rate_share)
        parser.add_argument("--rx-q-max", type=int, default=t.rx_q_max)
        parser.add_argument(
            "--q-slope",
            type=float,
            default=t.q_slope_per_min,
            help="q climbing: fitted slope above this, in frames per minute ...",
        )
        parser.add_argument(
            "--q-rise",
            type=float,
            default=t.q_rise_min,
            help="... and a fitted rise over the run above this many frames.",
        )
        parser.add_argument("--write-ms-p99", type=float, default=t.write_ms_p99_max)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["calls"] < 1:
            raise CommandError("--calls must be at least 1")
        if options["speed"] <= 0:
            raise CommandError("--speed must be positive")
        check = CheckOptions(
            calls=options["calls"],
            duration_s=options["duration"],
            ramp_s=options["ramp"],
            texts=options["text"] or UTTERANCES,
            wavs=options["wav"],
            pause_s=options["pause"],
            lead_silence_s=options["lead_silence"],
            speed=options["speed"],
            transcripts=options["transcripts"],
            settle_s=options["settle"],
            thresholds=Thresholds(
                fps_tolerance=options["fps_tolerance"],
                fps_on_rate_share=options["fps_on_rate_share"],
                rx_q_max=options["rx_q_max"],
                q_slope_per_min=options["q_slope"],
                q_rise_min=options["q_rise"],
                write_ms_p99_max=options["write_ms_p99"],
            ),
        )
        if not options["spawn"]:
            go = self._check(options["url"], check)
        else:
            from telephony.testing.server_process import run_server

            with (
                tempfile.TemporaryDirectory(prefix="gonogo-") as workdir,
                run_server(fresh_database=False, workdir=Path(workdir), server="uvicorn") as server,
            ):
                pid = server.process.pid
                self.stdout.write(f"spawned uvicorn (as bin/run) on {server.base_url} (pid {pid})")
                go = self._check(server.base_url, check)
        if not go:
            raise CommandError("NO-GO", returncode=1)

    def _check(self, url: str, check: CheckOptions) -> bool:
        """Run the check against `url` and print its verdict; True on GO."""
        try:
            result = run_check(url, check, write=self.stdout.write)
        except CheckError as exc:
            raise CommandError(str(exc)) from exc
        print_verdict(result, self.stdout.write, good=self.style.SUCCESS, bad=self.style.ERROR)
        return result.go
