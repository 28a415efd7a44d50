"""`manage.py gonogo`: the brief's 2-minute GO/NO-GO check, run by an operator before a deploy.

It dials the server like Twilio (`telephony.testing.caller`) with calls that speak real audio with
pauses the whole time, prints the server's per-second figures as they come, then judges them by
the rules in `telephony.metrics.gonogo` and prints GO or NO-GO with each reason, where to
look, and the log lines that show it. Exit status 0 on GO, 1 on NO-GO.

Where the figures come from: the database the server writes. Every second of every call is a
`MetricSample` row and every PARTIAL and FINAL a `Transcript` row, written by the server's own
recorder; this command reads them by CallSid through the ORM with its own settings, which are
the server's settings on the machine an operator deploys from. So it judges exactly what the
server measured (not what the caller saw), against a running server that has no log file to
share and no admin login to give, without adding an endpoint. Point it at the same
DATABASE_URL as the server, or use `--spawn` to start a server on this database.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from calls.models import Call, MetricSample, Transcript
from telephony.media.audio import SILENCE_FRAME
from telephony.metrics.gonogo import Thresholds, Verdict, evidence, judge, transcript_line
from telephony.metrics.meters import SecondSample
from telephony.testing.caller import CallReport, dial, new_sid, run, shared_ticker, speech_audio
from telephony.turns.transcript import TranscriptEvent

UTTERANCES = (
    "I would like to check the status of my order, please.",
    "My order number is four five six seven.",
    "Can you tell me when it will arrive?",
    "Thank you, that is all for today.",
)
BYTES_PER_S = 8000  # 8 kHz mu-law
CALLER_LATE_MS = 40.0  # the caller's own sends later than this: its verdict may be the client's
NO_FIGURES_AFTER_S = 8.0  # no rows this long after dialling: wrong database, say so


def speech_plan(
    utterances: Sequence[bytes], *, duration_s: float, lead_s: float, pause_s: float
) -> tuple[bytes, float, int]:
    """Return (audio, tail silence, utterances spoken): speech and pauses filling `duration_s`.

    After `lead_s` of listening, the utterances are spoken in turn with `pause_s` of silence
    between them, for as long as one more fits with a second (or the pause, if shorter) left
    after it for its FINAL; the silence after the last one is the tail, to the end of the call.
    """
    pause = SILENCE_FRAME * round(pause_s * 50)
    after_s = min(pause_s, 1.0)
    parts: list[bytes] = []
    used = lead_s
    while utterances:
        gap_s = pause_s if parts else 0.0
        utterance = utterances[len(parts) % len(utterances)]
        speech_s = len(utterance) / BYTES_PER_S
        if used + gap_s + speech_s + after_s > duration_s + 1e-9:
            break
        parts.append(utterance)
        used += gap_s + speech_s
    return pause.join(parts), max(0.0, duration_s - used), len(parts)


def as_second(row: MetricSample, call_sid: str) -> SecondSample:
    """Return a stored second as the session logged it."""
    return SecondSample(
        call_sid=call_sid,
        second=row.second,
        at=row.at.timestamp(),
        fps_in=row.fps_in,
        rx_q=row.rx_q,
        rx_drops=row.rx_drops,
        rx_drops_total=row.rx_drops_total,
        write_ms=row.write_ms,
        tx_fps=row.tx_fps,
        tx_q=row.tx_q,
        tx_drops=row.tx_drops,
        tx_drops_total=row.tx_drops_total,
        send_q=row.send_q,
        mark_rtt_ms=row.mark_rtt_ms,
    )


def as_event(row: Transcript, call_sid: str) -> TranscriptEvent:
    """Return a stored transcript row as the session published it."""
    return TranscriptEvent(
        call_sid=call_sid,
        kind=row.kind,  # type: ignore[arg-type]
        text=row.text,
        utterance=row.utterance,
        offset_ms=row.offset_ms,
        at=row.at.timestamp(),
        latency_ms=row.latency_ms,
        local=row.local,
    )


@dataclass
class CallFigures:
    """What the server recorded for one call so far."""

    call_sid: str
    seconds: dict[int, SecondSample] = field(default_factory=dict)
    said: list[TranscriptEvent] = field(default_factory=list)
    call: Call | None = None

    def count(self, kind: str) -> int:
        """How many transcript events of `kind` the server recorded."""
        return sum(e.kind == kind for e in self.said)


class Watcher:
    """Read the calls' new rows from the database, by id, once a poll."""

    def __init__(self, call_sids: Sequence[str]) -> None:
        self.calls = {sid: CallFigures(sid) for sid in call_sids}
        self._last_sample = 0
        self._last_transcript = 0

    def poll(self) -> tuple[list[SecondSample], list[TranscriptEvent]]:
        """Return the seconds and transcript events recorded since the last poll."""
        sids = list(self.calls)
        new_seconds = []
        rows = MetricSample.objects.filter(
            id__gt=self._last_sample, call__call_sid__in=sids
        ).select_related("call")
        for row in rows.order_by("id"):
            self._last_sample = row.id
            sample = as_second(row, row.call.call_sid)
            self.calls[sample.call_sid].seconds[sample.second] = sample
            new_seconds.append(sample)
        new_events = []
        transcripts = Transcript.objects.filter(
            id__gt=self._last_transcript, call__call_sid__in=sids
        ).select_related("call")
        for row in transcripts.order_by("id"):
            self._last_transcript = row.id
            event = as_event(row, row.call.call_sid)
            self.calls[event.call_sid].said.append(event)
            new_events.append(event)
        return new_seconds, new_events

    def load_calls(self) -> int:
        """Attach the call rows; return how many have ended (their totals are final)."""
        for call in Call.objects.filter(call_sid__in=list(self.calls)):
            self.calls[call.call_sid].call = call
        return sum(f.call is not None and f.call.ended_at is not None for f in self.calls.values())


class Command(BaseCommand):
    help = (
        "Dial the server with speaking calls and judge its own per-second figures by the "
        "brief's GO/NO-GO rules. Exit 0 on GO, 1 on NO-GO."
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
        thresholds = Thresholds(
            fps_tolerance=options["fps_tolerance"],
            fps_on_rate_share=options["fps_on_rate_share"],
            rx_q_max=options["rx_q_max"],
            q_slope_per_min=options["q_slope"],
            q_rise_min=options["q_rise"],
            write_ms_p99_max=options["write_ms_p99"],
        )
        if not options["spawn"]:
            go = self._check(options["url"], options, thresholds)
        else:
            from telephony.testing.server_process import run_server

            with (
                tempfile.TemporaryDirectory(prefix="gonogo-") as workdir,
                run_server(fresh_database=False, workdir=Path(workdir), server="uvicorn") as server,
            ):
                pid = server.process.pid
                self.stdout.write(f"spawned uvicorn (as bin/run) on {server.base_url} (pid {pid})")
                go = self._check(server.base_url, options, thresholds)
        if not go:
            raise CommandError("NO-GO", returncode=1)

    # --- the run ----------------------------------------------------------------------------

    def _check(self, url: str, options: dict[str, Any], thresholds: Thresholds) -> bool:
        """Dial, show the figures as they come, judge; True on GO."""
        calls, duration = options["calls"], options["duration"]
        texts = options["text"] or list(UTTERANCES)
        utterances = [speech_audio(t) for t in texts]
        lead = options["lead_silence"]
        if lead is None:
            # Listen to the greeting first, as callers do; on a short check, talk over its end
            # (a barge-in, which is no fault) rather than not speak at all.
            greeting = speech_audio(settings.GREETING_TEXT) if settings.GREETING_TEXT else b""
            first = len(utterances[0]) / BYTES_PER_S + min(options["pause"], 1.0)
            lead = min(len(greeting) / BYTES_PER_S + 0.7, max(0.5, duration - first))
        audio, tail, spoken = speech_plan(
            utterances,
            duration_s=duration,
            lead_s=lead,
            pause_s=options["pause"],
        )
        if spoken == 0:
            raise CommandError(
                f"--duration {duration:g} leaves no time to speak after {lead:.1f} s"
            )
        ramp = options["ramp"] if options["ramp"] is not None else 0.02 * calls
        sids = [new_sid("CA") for _ in range(calls)]
        self.stdout.write(
            f"gonogo: {calls} call(s) to {url} for {duration:g} s each: listen {lead:.1f} s, "
            f"then {spoken} utterance(s) with {options['pause']:g} s pauses, {tail:.1f} s more "
            f"listening; speed {options['speed']:g}x; figures from {self._database()}"
        )
        reports: list[CallReport] = []
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        started = time.monotonic()
        caller = threading.Thread(
            target=lambda: reports.extend(
                run(
                    self._dial_all(
                        url,
                        sids,
                        ramp_s=ramp,
                        audio=audio,
                        lead_silence_s=lead,
                        tail_silence_s=tail,
                        speed=options["speed"],
                    )
                )
            ),
            name="gonogo-caller",
            daemon=True,
        )
        caller.start()
        watcher = Watcher(sids)
        table = Table(self.stdout.write, calls)
        while caller.is_alive():
            caller.join(1.0)
            table.show(*watcher.poll())
            if not table.rows and time.monotonic() - started > NO_FIGURES_AFTER_S + ramp:
                table.warn_once(
                    "no per-second figures in the database yet: is the server writing to "
                    f"{self._database()}?"
                )
        wall = time.monotonic() - started
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        deadline = time.monotonic() + options["settle"]
        while watcher.load_calls() < calls and time.monotonic() < deadline:
            time.sleep(0.25)
            table.show(*watcher.poll())
        time.sleep(0.3)  # the recorder writes the last rows with the call's end, in one batch
        table.show(*watcher.poll())
        watcher.load_calls()
        cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
        return self._verdict(watcher, reports, options, thresholds, cpu / wall)

    async def _dial_all(
        self, url: str, sids: list[str], *, ramp_s: float, **kwargs: Any
    ) -> list[CallReport]:
        """Place every call (starts spread over `ramp_s`) on one shared ticker."""
        import asyncio

        ticker = shared_ticker()

        async def one(index: int, sid: str) -> CallReport:
            await asyncio.sleep(ramp_s * index / len(sids))
            return await dial(
                url,
                auth_token=settings.TWILIO_AUTH_TOKEN,
                call_sid=sid,
                ticker=ticker,
                **kwargs,
            )

        return list(await asyncio.gather(*(one(i, sid) for i, sid in enumerate(sids))))

    # --- the verdict --------------------------------------------------------------------------

    def _verdict(
        self,
        watcher: Watcher,
        reports: list[CallReport],
        options: dict[str, Any],
        thresholds: Thresholds,
        caller_cpu: float,
    ) -> bool:
        """Judge every call, print the verdict with its reasons and log lines; True on GO."""
        by_sid = {r.call_sid: r for r in reports}
        verdicts: dict[str, Verdict] = {}
        problems: dict[str, list[str]] = defaultdict(list)
        for sid, figures in watcher.calls.items():
            report = by_sid.get(sid)
            if report is not None and not report.ok:
                problems[sid].append(f"the call failed: {report.error or report.close_code}")
            call = figures.call
            if call is None or call.ended_at is None:
                problems[sid].append("the server did not record the call's end")
            engine = call.stt_engine if call is not None else "?"
            expect = options["transcripts"] == "yes" or (
                options["transcripts"] == "auto" and engine != "none"
            )
            verdicts[sid] = judge(
                list(figures.seconds.values()),
                rx_drops_total=call.rx_drops if call is not None and call.ended_at else None,
                partials=figures.count("partial") if expect else None,
                finals=figures.count("final") if expect else None,
                thresholds=thresholds,
            )
            if call is not None and call.shed:
                problems[sid].append(f"the recorder shed rows {call.shed}: figures incomplete")
        go_sids = [s for s, v in verdicts.items() if v.go is True and not problems[s]]
        go = len(go_sids) == len(verdicts)
        out = self.stdout.write
        out("")
        late = max((r.send_late_max_ms for r in reports), default=0.0)
        out(
            f"caller: {caller_cpu * 100:.1f} % of a core for {len(reports)} call(s) "
            f"({caller_cpu * 100 / max(1, len(reports)):.2f} % each); its sends were up to "
            f"{late:.0f} ms late"
        )
        if late > CALLER_LATE_MS:
            out(
                f"  warning: the caller itself fell behind (> {CALLER_LATE_MS:.0f} ms): "
                "fps_in figures may show the client's trouble, not the server's"
            )
        failing = [s for s in verdicts if s not in go_sids]
        for sid in failing[:5]:
            self._explain(sid, verdicts[sid], problems[sid], watcher.calls[sid])
        if len(failing) > 5:
            out(f"... and {len(failing) - 5} more NO-GO call(s)")
        if go:
            sid = next(iter(verdicts))
            out(f"{sid}: GO")
            figures = watcher.calls[sid]
            seconds = [figures.seconds[k] for k in sorted(figures.seconds)]
            for line in evidence(verdicts[sid], seconds, figures.said):
                out(f"    {line}")
        style = self.style.SUCCESS if go else self.style.ERROR
        out(style(f"{'GO' if go else 'NO-GO'}: {len(go_sids)}/{len(verdicts)} call(s) GO"))
        return go

    def _explain(
        self, sid: str, verdict: Verdict, problems: list[str], figures: CallFigures
    ) -> None:
        """Print one call's NO-GO: each reason, where to look, and the log lines that show it."""
        out = self.stdout.write
        out(self.style.ERROR(f"{sid}: NO-GO"))
        for problem in problems:
            out(f"  - {problem}")
        for finding in verdict.findings:
            out(f"  - {finding.reason}: {finding.hint}")
        seconds = [figures.seconds[k] for k in sorted(figures.seconds)]
        for line in evidence(verdict, seconds, figures.said):
            out(f"    {line}")

    def _database(self) -> str:
        db = settings.DATABASES["default"]
        return f"{db['ENGINE'].rsplit('.', 1)[-1]} {db.get('NAME')}"


class Table:
    """The per-second table: one row per call-second (up to 3 calls), else per second."""

    PER_CALL_MAX = 3

    def __init__(self, write: Callable[[str], Any], calls: int) -> None:
        self._write = write
        self._per_call = calls <= self.PER_CALL_MAX
        self._warned = False
        self.rows = 0
        self._header = False

    def warn_once(self, text: str) -> None:
        """Print a warning the first time only."""
        if not self._warned:
            self._warned = True
            self._write(f"warning: {text}")

    def show(self, seconds: list[SecondSample], said: list[TranscriptEvent]) -> None:
        """Print the rows for newly recorded seconds and transcript events."""
        if not seconds and not said:
            return
        if not self._header:
            self._header = True
            self._write(
                "   s  call       fps_in rx_q drops write_ms | tx_fps tx_q drops send_q"
                if self._per_call
                else "   s  calls  fps_in min-max  rx_q max  drops  write_ms max | "
                "tx_fps min-max  tx_q max  drops"
            )
        if self._per_call:
            merged: list[tuple[float, str]] = [
                (
                    s.at,
                    f"{s.second:>4}  {s.call_sid[:9]}  {s.fps_in:>6} {s.rx_q:>4} "
                    f"{s.rx_drops:>5} {s.write_ms:>8.2f} | {s.tx_fps:>6} {s.tx_q:>4} "
                    f"{s.tx_drops:>5} {s.send_q:>6}",
                )
                for s in seconds
            ]
            merged += [(e.at, f"      {transcript_line(e)}") for e in said]
            for _, line in sorted(merged, key=lambda item: item[0]):
                self._write(line)
        else:
            by_second: dict[int, list[SecondSample]] = defaultdict(list)
            for s in seconds:
                by_second[s.second].append(s)
            for n in sorted(by_second):
                group = by_second[n]
                fps = [s.fps_in for s in group]
                tx = [s.tx_fps for s in group]
                self._write(
                    f"{n:>4}  {len(group):>5}  {min(fps):>6}-{max(fps):<6} "
                    f"{max(s.rx_q for s in group):>8} {sum(s.rx_drops for s in group):>6} "
                    f"{max(s.write_ms for s in group):>12.2f} | {min(tx):>6}-{max(tx):<6} "
                    f"{max(s.tx_q for s in group):>9} {sum(s.tx_drops for s in group):>6}"
                )
            finals = sum(e.kind == "final" for e in said)
            if said:
                self._write(f"      +{len(said) - finals} PARTIAL, +{finals} FINAL")
        self.rows += len(seconds)
        sys.stdout.flush()
