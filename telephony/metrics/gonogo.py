"""The GO/NO-GO rules, judged from one call's per-second figures (pure, no I/O).

One module for both users: the admin badge (`calls.services.call_ended`, at the end of every
call) and `manage.py gonogo` (before a deploy). A failed rule gives a short reason, stored on the
call and shown in the admin, and a hint of where to look. `evidence` picks the 10-15 log lines
that show a verdict, for an operator who reads the logs by hand; `explain` writes the verdict
out with its reasons and those lines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from telephony.metrics.histogram import Snapshot
from telephony.metrics.stats import percentile, slope
from telephony.turns.transcript import TranscriptEvent, transcript_line

EXPECTED_FPS = 50  # 20 ms frames
EPSILON = 1e-9  # float sums land a hair off exact boundaries (0.1 * 20 = 1.9999999999999996)

HINT_DROPS = "the STT write is slow or fps_in is not 50 (double encoding? one frame per media?)"
HINT_CLIMB = "check the resync and the 20 ms frame; look for a second send path"
HINT_RX_Q = "RX falls behind: the STT write is slow or the RX thread stalls"
HINT_FPS_IN = "heavy work per frame on the event loop (e.g. heavy JSON per media message)"
HINT_TX_FPS = "the TX thread misses its 20 ms ticks: the server is short of CPU"
HINT_TX_DROPS = "the socket or the event loop falls behind the TX thread"
HINT_WRITE = "the STT write blocks; it must only enqueue (well under 1 ms)"
HINT_TRANSCRIPTS = "the STT session never opened or hears nothing: read the engine's log lines"
HINT_SHORT = "run longer: the first and last seconds are partial and do not count"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where each rule draws its line; the defaults are the go-live check's."""

    expected_fps: int = EXPECTED_FPS
    fps_tolerance: int = 5  # a second is on-rate within 50 ± 5 frames ...
    fps_on_rate_share: float = 0.9  # ... and nine steady seconds in ten must be on-rate
    rx_q_max: int = 20  # a healthy RX queue stays under 20 frames
    # q climbs when its least-squares slope is above this (frames per minute) and the fitted
    # line rises more than `q_rise_min` frames across the run: a short run's noise of a few
    # frames (a prompt filling the TX prefill) is not a climb, a slow leak over 2 minutes is.
    q_slope_per_min: float = 10.0
    q_rise_min: float = 5.0
    write_ms_p99_max: float = 1.0
    min_steady_seconds: int = 3  # fewer than this: too short to judge


DEFAULT_THRESHOLDS = Thresholds()


class Figures(Protocol):
    """One second of a call: a `telephony.metrics.meters.SecondSample` or a `MetricSample` row."""

    second: int
    fps_in: int
    rx_q: int
    rx_drops: int
    write_ms: float
    tx_fps: int
    tx_q: int
    tx_drops: int


@dataclass(frozen=True, slots=True)
class Finding:
    """A failed rule: what (`reason`), where to look (`hint`), the seconds that show it."""

    rule: str
    reason: str
    hint: str
    seconds: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Verdict:
    go: bool | None  # None: not enough seconds to judge
    findings: tuple[Finding, ...] = field(default=())

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why NO-GO (empty for GO), one short line per failed rule."""
        return tuple(f.reason for f in self.findings)


def judge(
    samples: Sequence[Figures],
    *,
    rx_drops_total: int | None = None,
    partials: int | None = None,
    finals: int | None = None,
    writes: Snapshot | None = None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> Verdict:
    """Judge a call by the rules; `partials`/`finals` only when the caller spoke.

    `writes` is the time of every STT write of the call (`RxWorker.write_times`): the write
    rule takes their p99. Without it (a call recorded before writes were kept) the rule falls
    back to the p99 of the per-second maxima, which over 30 s is the single slowest write.
    """
    t = thresholds
    ordered = sorted(samples, key=lambda s: s.second)
    # The first and the last second are partial (the stream starts and stops inside them).
    steady = ordered[1:-1]
    if len(steady) < t.min_steady_seconds:
        return Verdict(go=None, findings=(Finding("too_short", "too short to judge", HINT_SHORT),))
    findings: list[Finding] = []

    drops = rx_drops_total if rx_drops_total is not None else sum(s.rx_drops for s in ordered)
    if drops > 0:
        at = tuple(s.second for s in ordered if s.rx_drops > 0)
        findings.append(Finding("rx_drops", f"RX drops={drops}", HINT_DROPS, at))

    rx_max = max(s.rx_q for s in steady)
    if rx_max > t.rx_q_max:
        at = tuple(s.second for s in steady if s.rx_q > t.rx_q_max)
        findings.append(Finding("rx_q", f"RX q up to {rx_max} (> {t.rx_q_max})", HINT_RX_Q, at))

    span_s = steady[-1].second - steady[0].second
    for name in ("rx_q", "tx_q"):
        per_min = 60.0 * slope([(s.second, getattr(s, name)) for s in steady])
        if per_min > t.q_slope_per_min + EPSILON and per_min * span_s / 60 > t.q_rise_min + EPSILON:
            at = (steady[0].second, steady[len(steady) // 2].second, steady[-1].second)
            reason = f"{name} climbing (+{per_min:.0f} frames/min over {span_s} s)"
            findings.append(Finding("q_climb", reason, HINT_CLIMB, at))

    allowed_off = math.floor((1 - t.fps_on_rate_share) * len(steady) + EPSILON)
    for name, label, hint in (("fps_in", "fps_in", HINT_FPS_IN), ("tx_fps", "TX fps", HINT_TX_FPS)):
        off = [s for s in steady if abs(getattr(s, name) - t.expected_fps) > t.fps_tolerance]
        if len(off) > allowed_off:
            reason = f"{label} off {t.expected_fps}±{t.fps_tolerance} in {len(off)}/{len(steady)} s"
            findings.append(Finding(name, reason, hint, tuple(s.second for s in off)))

    tx_drops = sum(s.tx_drops for s in ordered)
    if tx_drops > 0:
        at = tuple(s.second for s in ordered if s.tx_drops > 0)
        findings.append(Finding("tx_drops", f"TX drops={tx_drops}", HINT_TX_DROPS, at))

    if writes is not None and writes.count:
        p99 = writes.percentile(99)  # to 10 µs, below: exact against a bound on that step
    else:
        p99 = percentile([s.write_ms for s in steady], 99)
    if p99 >= t.write_ms_p99_max:
        at = tuple(s.second for s in steady if s.write_ms >= t.write_ms_p99_max)
        reason = f"write_ms p99={p99:.2f} (>= {t.write_ms_p99_max:g})"
        findings.append(Finding("write_ms", reason, HINT_WRITE, at))

    if partials is not None and finals is not None and (partials < 1 or finals < 1):
        reason = f"{partials} PARTIAL and {finals} FINAL (at least one of each expected)"
        findings.append(Finding("transcripts", reason, HINT_TRANSCRIPTS))

    return Verdict(go=not findings, findings=tuple(findings))


# --- The log lines that show a verdict -----------------------------------------------------------


class Second(Protocol):
    """One second with what the `[RX]`/`[TX]` lines need (a `SecondSample`)."""

    second: int
    at: float

    def rx_line(self) -> str: ...

    def tx_line(self) -> str: ...


def _stamp(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).strftime("%H:%M:%S")


def evidence(
    verdict: Verdict,
    samples: Sequence[Second],
    said: Sequence[TranscriptEvent] = (),
    *,
    limit: int = 15,
) -> list[str]:
    """Return up to `limit` log lines, in time order, that show why the call is GO or NO-GO."""
    by_second = {s.second: s for s in samples}
    shown = [f.seconds for f in verdict.findings if f.seconds]
    transcripts = _pick_transcripts(said, 3 if len(said) else 0)
    seconds_budget = max(1, (limit - len(transcripts)) // 2)  # an [RX] and a [TX] line each
    ordered = sorted(by_second)
    chosen: set[int] = set()
    if shown:
        # Share the budget between the failed rules: the first seconds each one points at,
        # then the seconds around them, so the lines show the change and not only the fault.
        per_rule = max(1, seconds_budget // len(shown))
        for seconds in shown:
            chosen.update(s for s in seconds[:per_rule] if s in by_second)
        centres = sorted(chosen)
        for distance in range(1, len(ordered)):
            for centre in centres:
                for s in (centre - distance, centre + distance):
                    if len(chosen) < seconds_budget and s in by_second:
                        chosen.add(s)
            if len(chosen) >= seconds_budget:
                break
    else:
        steady = ordered[1:-1] or ordered
        step = max(1, len(steady) // seconds_budget)
        chosen.update(steady[::step][:seconds_budget])
    stamped: list[tuple[float, int, str]] = []
    for second in sorted(chosen):
        s = by_second[second]
        stamped.append((s.at, 0, f"{_stamp(s.at)} {s.rx_line()}"))
        stamped.append((s.at, 1, f"{_stamp(s.at)} {s.tx_line()}"))
    for event in transcripts:
        stamped.append((event.at, 2, f"{_stamp(event.at)} {transcript_line(event)}"))
    stamped.sort(key=lambda item: (item[0], item[1]))
    return [line for _, _, line in stamped][:limit]


def explain(
    call_sid: str,
    verdict: Verdict,
    samples: Sequence[Second],
    said: Sequence[TranscriptEvent] = (),
    *,
    problems: Sequence[str] = (),
    writes: Snapshot | None = None,
    write_bound_ms: float = DEFAULT_THRESHOLDS.write_ms_p99_max,
) -> list[str]:
    """Return a call's verdict as an operator reads it: GO or NO-GO, why, and the lines showing it.

    `problems` are faults found outside the figures (the call failed, its end is missing); a
    call with any is NO-GO. The first line is the verdict, then one `  - ` line per problem and
    failed rule (with where to look), the spread of the call's STT writes if known, then the
    log lines that show it, indented by four.
    """
    go = verdict.go is True and not problems
    lines = [f"{call_sid}: {'GO' if go else 'NO-GO'}"]
    lines += [f"  - {problem}" for problem in problems]
    lines += [f"  - {finding.reason}: {finding.hint}" for finding in verdict.findings]
    if writes is not None and writes.count:
        lines.append(writes_line(writes, write_bound_ms))
    lines += [f"    {line}" for line in evidence(verdict, samples, said)]
    return lines


def writes_line(writes: Snapshot, bound_ms: float) -> str:
    """Return the spread of a call's STT writes in one line (what the write rule judged)."""
    return (
        f"  STT writes: {writes.count}; p50 {writes.percentile(50):.2f} ms, p99 "
        f"{writes.percentile(99):.2f} ms, max {writes.max_ms:.2f} ms; "
        f"{writes.at_or_above(bound_ms)} at or over {bound_ms:g} ms"
    )


def summary(go_calls: int, calls: int) -> str:
    """Return the check's last line: GO only when every call is GO."""
    return f"{'GO' if go_calls == calls else 'NO-GO'}: {go_calls}/{calls} call(s) GO"


def _pick_transcripts(said: Sequence[TranscriptEvent], n: int) -> list[TranscriptEvent]:
    """The first PARTIAL, the first FINAL and the last FINAL (or revision), when there are."""
    partials = [e for e in said if e.kind == "partial"]
    finals = [e for e in said if e.kind != "partial"]
    picked = partials[:1] + finals[:1] + finals[1:][-1:]
    return picked[:n]
