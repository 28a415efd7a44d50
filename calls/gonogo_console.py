"""What `manage.py gonogo` prints: the per-second table as the figures come, then the verdict."""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from telephony.metrics.gonogo import summary
from telephony.metrics.meters import SecondSample
from telephony.turns.transcript import TranscriptEvent, transcript_line

if TYPE_CHECKING:
    from calls.gonogo_run import CheckResult
    from telephony.testing.caller import CallReport

CALLER_LATE_MS = 40.0  # the caller's own sends later than this: its verdict may be the client's
NO_GO_SHOWN = 5  # NO-GO calls explained in full; the rest are counted


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


def caller_lines(reports: Sequence[CallReport], caller_cpu: float) -> list[str]:
    """Return what the check's own caller cost, and a warning if it fell behind."""
    late = max((r.send_late_max_ms for r in reports), default=0.0)
    lines = [
        f"caller: {caller_cpu * 100:.1f} % of a core for {len(reports)} call(s) "
        f"({caller_cpu * 100 / max(1, len(reports)):.2f} % each); its sends were up to "
        f"{late:.0f} ms late"
    ]
    if late > CALLER_LATE_MS:
        lines.append(
            f"  warning: the caller itself fell behind (> {CALLER_LATE_MS:.0f} ms): "
            "fps_in figures may show the client's trouble, not the server's"
        )
    return lines


def print_verdict(
    result: CheckResult,
    write: Callable[[str], Any],
    *,
    good: Callable[[str], str] = str,
    bad: Callable[[str], str] = str,
) -> None:
    """Print the verdict: the caller's cost, each NO-GO call explained (or one GO call), GO/NO-GO.

    `good` and `bad` style the lines that say GO and NO-GO.
    """
    write("")
    for line in caller_lines(result.reports, result.caller_cpu):
        write(line)
    failing = [r for r in result.results if not r.go]
    for r in failing[:NO_GO_SHOWN]:
        header, *rest = r.explained()
        write(bad(header))
        for line in rest:
            write(line)
    if len(failing) > NO_GO_SHOWN:
        write(f"... and {len(failing) - NO_GO_SHOWN} more NO-GO call(s)")
    if result.go:
        for line in result.results[0].explained():
            write(line)
    go_calls = len(result.results) - len(failing)
    write((good if result.go else bad)(summary(go_calls, len(result.results))))
