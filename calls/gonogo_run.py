"""A GO/NO-GO check of a running server: speak to it as callers do, read what it recorded, judge.

It dials the server like Twilio (`telephony.testing.caller`) with calls that speak real audio
with pauses the whole time, shows the server's per-second figures as they come, then judges
them by the rules in `telephony.metrics.gonogo`.

Where the figures come from: the database the server writes. Every second of every call is a
`MetricSample` row and every PARTIAL and FINAL a `Transcript` row, written by the server's own
recorder; the check reads them by CallSid through the ORM with its own settings, which are the
server's settings on the machine an operator deploys from. So it judges exactly what the
server measured (not what the caller saw), against a running server that has no log file to
share and no admin login to give, without adding an endpoint.
"""

from __future__ import annotations

import asyncio
import resource
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from calls import selectors
from calls.gonogo_console import Table
from calls.models import Call
from telephony.media.audio import SILENCE_FRAME
from telephony.metrics.gonogo import DEFAULT_THRESHOLDS, Thresholds, Verdict, explain, judge
from telephony.metrics.histogram import Snapshot
from telephony.metrics.meters import SecondSample
from telephony.testing.caller import (
    CallReport,
    dial,
    new_sid,
    read_wav_as_ulaw,
    run,
    shared_ticker,
    speech_audio,
)
from telephony.turns.transcript import TranscriptEvent

UTTERANCES = (
    "I would like to check the status of my order, please.",
    "My order number is four five six seven.",
    "Can you tell me when it will arrive?",
    "Thank you, that is all for today.",
)
BYTES_PER_S = 8000  # 8 kHz mu-law
NO_FIGURES_AFTER_S = 8.0  # no rows this long after dialling: wrong database, say so
POLL_S = 1.0  # the figures are read and shown once a second while the calls run
SETTLE_POLL_S = 0.25
LAST_ROWS_S = 0.3  # the recorder writes a call's last rows with its end, in one batch


class CheckError(Exception):
    """The check cannot run as asked."""


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


def lead_silence(
    first_utterance: bytes, *, greeting: bytes, pause_s: float, duration_s: float
) -> float:
    """Return how long a caller listens before speaking: the greeting and a breath after it.

    On a short check the caller talks over the greeting's end (a barge-in, which is no fault)
    rather than not speak at all.
    """
    first_s = len(first_utterance) / BYTES_PER_S + min(pause_s, 1.0)
    return min(len(greeting) / BYTES_PER_S + 0.7, max(0.5, duration_s - first_s))


@dataclass(frozen=True, slots=True)
class CheckOptions:
    """How the check calls: how many, how long, what they say, and the rules' thresholds."""

    calls: int = 1
    duration_s: float = 120.0
    ramp_s: float | None = None  # call starts spread over this long (None: 20 ms per call)
    texts: Sequence[str] = UTTERANCES
    wavs: Sequence[str] = ()  # what the callers say, from WAV files (instead of `texts`)
    pause_s: float = 2.0  # silence after each utterance
    lead_silence_s: float | None = None  # None: the greeting's length
    speed: float = 1.0  # inbound rate as a multiple of real time
    # Require a PARTIAL and a FINAL per call: "yes", "no", or "auto" (unless the server's STT
    # engine is `none`, which recognizes nothing by design).
    transcripts: str = "auto"
    settle_s: float = 10.0  # wait after hanging up for the calls' last rows
    thresholds: Thresholds = DEFAULT_THRESHOLDS


@dataclass
class CallFigures:
    """What the server recorded for one call so far."""

    call_sid: str
    seconds: dict[int, SecondSample] = field(default_factory=dict)
    said: list[TranscriptEvent] = field(default_factory=list)
    call: Call | None = None

    def count(self, kind: str) -> int:
        """Return how many transcript events of `kind` the server recorded."""
        return sum(e.kind == kind for e in self.said)

    def ordered_seconds(self) -> list[SecondSample]:
        """Return the recorded seconds in order."""
        return [self.seconds[k] for k in sorted(self.seconds)]


class Watcher:
    """Read the calls' new rows from the database, once a poll."""

    def __init__(self, call_sids: Sequence[str]) -> None:
        self.calls = {sid: CallFigures(sid) for sid in call_sids}
        self._last_sample = 0
        self._last_transcript = 0

    def poll(self) -> tuple[list[SecondSample], list[TranscriptEvent]]:
        """Return the seconds and transcript events recorded since the last poll."""
        seconds, self._last_sample = selectors.seconds_recorded_after(
            call_sids=self.calls, after_id=self._last_sample
        )
        for sample in seconds:
            self.calls[sample.call_sid].seconds[sample.second] = sample
        said, self._last_transcript = selectors.transcripts_recorded_after(
            call_sids=self.calls, after_id=self._last_transcript
        )
        for event in said:
            self.calls[event.call_sid].said.append(event)
        return seconds, said

    def load_calls(self) -> int:
        """Attach the call rows; return how many have ended (their totals are final)."""
        for sid, call in selectors.calls_by_sid(call_sids=self.calls).items():
            self.calls[sid].call = call
        return sum(f.call is not None and f.call.ended_at is not None for f in self.calls.values())


@dataclass(frozen=True, slots=True)
class CallResult:
    """One call's verdict, with the faults found outside its figures."""

    figures: CallFigures
    verdict: Verdict
    problems: tuple[str, ...] = ()
    writes: Snapshot | None = None  # every STT write of the call, when its end was recorded
    write_bound_ms: float = DEFAULT_THRESHOLDS.write_ms_p99_max

    @property
    def go(self) -> bool:
        return self.verdict.go is True and not self.problems

    def explained(self) -> list[str]:
        """Return the verdict as an operator reads it, with its reasons and log lines."""
        seconds, said = self.figures.ordered_seconds(), self.figures.said
        return explain(
            self.figures.call_sid,
            self.verdict,
            seconds,
            said,
            problems=self.problems,
            writes=self.writes,
            write_bound_ms=self.write_bound_ms,
        )


@dataclass(frozen=True, slots=True)
class CheckResult:
    """Every call's result, and what the check's own caller cost and how late it ran."""

    results: list[CallResult]
    reports: list[CallReport]
    caller_cpu: float  # share of one core the caller used while the calls ran

    @property
    def go(self) -> bool:
        return all(r.go for r in self.results)


def judge_calls(
    calls: Mapping[str, CallFigures],
    reports: Sequence[CallReport],
    *,
    transcripts: str,
    thresholds: Thresholds,
) -> list[CallResult]:
    """Judge every call by its recorded figures, and note what went wrong beyond them."""
    by_sid = {r.call_sid: r for r in reports}
    results = []
    for sid, figures in calls.items():
        problems = []
        report = by_sid.get(sid)
        if report is not None and not report.ok:
            problems.append(f"the call failed: {report.error or report.close_code}")
        call = figures.call
        if call is None or call.ended_at is None:
            problems.append("the server did not record the call's end")
        engine = call.stt_engine if call is not None else "?"
        writes = selectors.call_write_times(call) if call is not None and call.ended_at else None
        expect = transcripts == "yes" or (transcripts == "auto" and engine != "none")
        verdict = judge(
            list(figures.seconds.values()),
            rx_drops_total=call.rx_drops if call is not None and call.ended_at else None,
            partials=figures.count("partial") if expect else None,
            finals=figures.count("final") if expect else None,
            writes=writes,
            thresholds=thresholds,
        )
        if call is not None and call.shed:
            problems.append(f"the recorder shed rows {call.shed}: figures incomplete")
        results.append(
            CallResult(figures, verdict, tuple(problems), writes, thresholds.write_ms_p99_max)
        )
    return results


def database_name() -> str:
    """Return the database the figures are read from, as an operator recognizes it."""
    db = settings.DATABASES["default"]
    return f"{db['ENGINE'].rsplit('.', 1)[-1]} {db.get('NAME')}"


def utterance_audio(options: CheckOptions) -> list[bytes]:
    """What the callers say, in turn: the WAV files' audio, else the texts spoken by espeak."""
    if options.wavs:
        return [read_wav_as_ulaw(path) for path in options.wavs]
    return [speech_audio(text) for text in options.texts]


def run_check(url: str, options: CheckOptions, *, write: Callable[[str], Any]) -> CheckResult:
    """Dial, show the figures as they come (through `write`), and judge every call."""
    duration = options.duration_s
    utterances = utterance_audio(options)
    lead = options.lead_silence_s
    if lead is None:
        greeting = speech_audio(settings.GREETING_TEXT) if settings.GREETING_TEXT else b""
        lead = lead_silence(
            utterances[0], greeting=greeting, pause_s=options.pause_s, duration_s=duration
        )
    audio, tail, spoken = speech_plan(
        utterances, duration_s=duration, lead_s=lead, pause_s=options.pause_s
    )
    if spoken == 0:
        raise CheckError(f"--duration {duration:g} leaves no time to speak after {lead:.1f} s")
    ramp = options.ramp_s if options.ramp_s is not None else 0.02 * options.calls
    sids = [new_sid("CA") for _ in range(options.calls)]
    write(
        f"gonogo: {options.calls} call(s) to {url} for {duration:g} s each: listen {lead:.1f} s, "
        f"then {spoken} utterance(s) with {options.pause_s:g} s pauses, {tail:.1f} s more "
        f"listening; speed {options.speed:g}x; figures from {database_name()}"
    )
    reports: list[CallReport] = []
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    caller = threading.Thread(
        target=lambda: reports.extend(
            run(
                dial_all(
                    url,
                    sids,
                    ramp_s=ramp,
                    audio=audio,
                    lead_silence_s=lead,
                    tail_silence_s=tail,
                    speed=options.speed,
                )
            )
        ),
        name="gonogo-caller",
        daemon=True,
    )
    caller.start()
    watcher = Watcher(sids)
    table = Table(write, options.calls)
    while caller.is_alive():
        caller.join(POLL_S)
        table.show(*watcher.poll())
        if not table.rows and time.monotonic() - started > NO_FIGURES_AFTER_S + ramp:
            table.warn_once(
                "no per-second figures in the database yet: is the server writing to "
                f"{database_name()}?"
            )
    wall = time.monotonic() - started
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    deadline = time.monotonic() + options.settle_s
    while watcher.load_calls() < options.calls and time.monotonic() < deadline:
        time.sleep(SETTLE_POLL_S)
        table.show(*watcher.poll())
    time.sleep(LAST_ROWS_S)
    table.show(*watcher.poll())
    watcher.load_calls()
    cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    results = judge_calls(
        watcher.calls,
        reports,
        transcripts=options.transcripts,
        thresholds=options.thresholds,
    )
    return CheckResult(results=results, reports=reports, caller_cpu=cpu / wall)


async def dial_all(
    url: str, sids: Sequence[str], *, ramp_s: float, **kwargs: Any
) -> list[CallReport]:
    """Place every call (starts spread over `ramp_s`) on one shared ticker."""
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
