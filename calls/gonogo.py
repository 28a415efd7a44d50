"""The GO/NO-GO verdict of one call, judged from its per-second figures (pure, no I/O)."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

EXPECTED_FPS = 50  # 20 ms frames
FPS_TOLERANCE = 5  # a second counts as on-rate within 50 ± 5 frames
FPS_ON_RATE_SHARE = 0.9  # ... and nine steady seconds in ten must be on-rate
RX_Q_MAX = 20  # the brief: in practice q < 20
Q_CLIMB_FRAMES = 10  # last third's mean depth over the first third's by more than this: climbing
WRITE_MS_P99_MAX = 1.0
MIN_STEADY_SECONDS = 3  # fewer than this: too short to judge


class Figures(Protocol):
    second: int
    fps_in: int
    rx_q: int
    rx_drops: int
    tx_q: int
    write_ms: float


@dataclass(frozen=True, slots=True)
class Verdict:
    go: bool | None  # None: not enough seconds to judge
    reasons: tuple[str, ...]  # why NO-GO (empty for GO)


def percentile(values: Sequence[float], q: float) -> float:
    """Return the q-th percentile (0-100) by the nearest-rank method."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _climb(depths: Sequence[int]) -> float:
    third = max(1, len(depths) // 3)
    first, last = depths[:third], depths[-third:]
    return sum(last) / len(last) - sum(first) / len(first)


def judge(samples: Sequence[Figures], *, rx_drops_total: int | None = None) -> Verdict:
    """Judge a call by the brief: no RX drops, q not climbing, fps_in ~50, write_ms p99 < 1."""
    ordered = sorted(samples, key=lambda s: s.second)
    # The first and the last second are partial (the stream starts and stops inside them).
    steady = ordered[1:-1]
    if len(steady) < MIN_STEADY_SECONDS:
        return Verdict(go=None, reasons=("too short to judge",))
    reasons = []
    drops = rx_drops_total if rx_drops_total is not None else sum(s.rx_drops for s in ordered)
    if drops > 0:
        reasons.append(f"RX drops={drops}")
    rx_max = max(s.rx_q for s in steady)
    if rx_max > RX_Q_MAX:
        reasons.append(f"RX q up to {rx_max} (> {RX_Q_MAX})")
    for name in ("rx_q", "tx_q"):
        climb = _climb([getattr(s, name) for s in steady])
        if climb > Q_CLIMB_FRAMES:
            reasons.append(f"{name} climbing (+{climb:.0f} frames)")
    off_rate = [s for s in steady if abs(s.fps_in - EXPECTED_FPS) > FPS_TOLERANCE]
    if len(off_rate) > (1 - FPS_ON_RATE_SHARE) * len(steady):
        share = f"{len(off_rate)}/{len(steady)} s"
        reasons.append(f"fps_in off {EXPECTED_FPS}±{FPS_TOLERANCE} in {share}")
    p99 = percentile([s.write_ms for s in steady], 99)
    if p99 >= WRITE_MS_P99_MAX:
        reasons.append(f"write_ms p99={p99:.2f} (>= {WRITE_MS_P99_MAX:g})")
    return Verdict(go=not reasons, reasons=tuple(reasons))
