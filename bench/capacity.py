"""Capacity: the most concurrent calls that all stay GO for 60 s, with the server on one core.

    python bench/capacity.py                                # STT_ENGINE=none, then whisper
    python bench/capacity.py --engine none --start 100 --seconds 60
    python bench/capacity.py --engine none --levels 100,120  # just these, no search
    python bench/capacity.py --quick                        # 2 calls x 5 s (the smoke test)
    python bench/capacity.py --engine none --levels 40 --trace-writes   # why writes were slow
    python bench/capacity.py --engine google,none --levels 50 --rounds 2  # side by side
    python bench/capacity.py --engine google --levels 50 --profile /tmp/g  # where it goes

Each trial starts a fresh server pinned to one core and runs `manage.py gonogo --calls N
--duration 60` pinned to the other: the operator's own check, so "GO" means exactly what it
means before a deploy (every call: no RX drops, no climbing queue, fps on 50 both ways, no TX
drops, write_ms p99 < 1 ms, and with a recognizer at least one PARTIAL and one FINAL). The
search grows N until a trial is NO-GO (or halves it until one is GO), then bisects. Per trial
it prints the server's CPU and RSS per call (steady window, against the fresh server's idle
RSS) and the callers' CPU.

STT_ENGINE=google reaches the fake Google (`bench/fake_google.py`, the real client library in
the server) in a process of its own on the callers' core, and the callers speak the fake's
scripted appointment (`--wav`), so every call has PARTIALs and FINALs to show. Several engines
(`--engine google,none`) and `--rounds` alternate: engine by engine, level by level, round by
round, so a comparison shares the machine's load of the moment.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import common

ENGINES = {
    # engine: (first N, growth factor)
    "none": (20, 1.5),
    "whisper": (1, 2.0),
    "google": (20, 1.5),
}


@dataclass
class Trial:
    calls: int
    go: bool
    go_calls: str
    reasons: list[str]
    server_share: float
    rss_per_call_mb: float
    caller_line: str
    load: str
    engine: str = ""
    slow_writes: str = ""  # with --trace-writes: where the slow RX writes spent their time
    profile: str = ""  # with --profile: CPU by kind of thread, and py-spy's summary

    def report(self) -> None:
        """Print the trial's row, then what --trace-writes and --profile found, indented."""
        print(self.row(), flush=True)
        for extra in (self.slow_writes, self.profile):
            if extra:
                print("      " + extra.replace("\n", "\n      "), flush=True)

    def row(self) -> str:
        verdict = "GO" if self.go else "NO-GO"
        why = "" if self.go else "  " + "; ".join(self.reasons[:3])
        return (
            f"{self.engine:>7} {self.calls:>5} {verdict:>6} {self.go_calls:>8} | "
            f"{self.server_share * 100:>6.1f} "
            f"{self.server_share * 100 / self.calls:>8.3f} {self.rss_per_call_mb:>8.3f} | "
            f"{self.caller_line:<34} | {self.load}{why}"
        )


HEADER = (
    " engine calls verdict  GO/all | server %core  %/call  RSS MB/call | "
    "callers (gonogo's own CPU)         | load at start"
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--engine",
        default="both",
        help="none, whisper, google, a comma-separated list of them (alternated), or both "
        "(none, then whisper)",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each call")
    parser.add_argument("--start", type=int, default=None, help="first N of the search")
    parser.add_argument("--levels", default="", help="comma-separated Ns to run, no search")
    parser.add_argument("--max-trials", type=int, default=8)
    parser.add_argument(
        "--pause",
        type=float,
        default=None,
        help="the callers' silence after each utterance, s (gonogo's --pause; default 2)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="with --levels: run the engines x levels so often"
    )
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="per trial: py-spy the server over the steady window (raw stacks to "
        "PATH.<engine>.<calls>.<round>) and CPU by kind of thread from /proc",
    )
    common.add_server_options(parser)
    parser.add_argument(
        "--trace-writes",
        action="store_true",
        help="log where each RX write of 1 ms or more spent its time, and sum it per trial "
        "(serves bench/write_trace_asgi.py)",
    )
    parser.add_argument(
        "--trace-writes-ms",
        type=float,
        default=1.0,
        metavar="MS",
        help="with --trace-writes: trace writes of this many ms or more (default 1)",
    )
    parser.add_argument("--quick", action="store_true", help="2 calls x 5 s: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.engine, args.seconds, args.levels = "none", 5.0, "2"
    args.engines = ["none", "whisper"] if args.engine == "both" else args.engine.split(",")
    for engine in args.engines:
        if engine not in ENGINES:
            parser.error(f"unknown engine {engine!r}: one of {', '.join(ENGINES)}")
    if len(args.engines) > 1 and not args.levels and args.engine != "both":
        parser.error("several engines side by side need --levels")
    return args


def main() -> None:
    args = parse_args()
    common.start()
    common.pin_and_describe(args, f"calls of {args.seconds:g} s")
    if args.levels and args.engine != "both":
        side_by_side(args)
        return
    for engine in args.engines:
        print(f"\n## STT_ENGINE={engine}\n{HEADER}", flush=True)
        trials: dict[int, Trial] = {}

        def run(n: int, engine: str = engine, trials: dict[int, Trial] = trials) -> bool:
            trial = run_trial(engine, n, args)
            trials[n] = trial
            trial.report()
            return trial.go

        if args.levels:
            for n in (int(x) for x in args.levels.split(",")):
                run(n)
        else:
            search(run, *ENGINES[engine], start=args.start, max_trials=args.max_trials)
        conclude(engine, list(trials.values()))


def side_by_side(args: argparse.Namespace) -> None:
    """Every engine at every level, `--rounds` times, alternating; then each engine's best."""
    print(f"\n{HEADER}", flush=True)
    trials: dict[str, list[Trial]] = {engine: [] for engine in args.engines}
    for round_ in range(args.rounds):
        for n in (int(x) for x in args.levels.split(",")):
            for engine in args.engines:
                trial = run_trial(engine, n, args, round_=round_)
                trials[engine].append(trial)
                trial.report()
    for engine, done in trials.items():
        conclude(engine, done)


def conclude(engine: str, trials: list[Trial]) -> None:
    """Print the most calls that were GO, and the per-call cost at that load."""
    good = [t for t in trials if t.go]
    if not good:
        print(f"=> STT_ENGINE={engine}: no level tried was GO")
        return
    best = max(t.calls for t in good)
    shares = [t.server_share * 100 / best for t in good if t.calls == best]
    rss = [t.rss_per_call_mb for t in good if t.calls == best]
    print(
        f"=> STT_ENGINE={engine}: {best} concurrent calls GO on one server core; "
        f"{sum(shares) / len(shares):.3f} % of a core and {sum(rss) / len(rss):.3f} MB "
        f"RSS per call at that load"
    )


def search(
    run: Callable[[int], bool],
    first: int,
    growth: float,
    *,
    start: int | None,
    max_trials: int,
) -> None:
    """Grow N until a NO-GO (halve until a GO), then bisect to within 20 % (or one call).

    `run(n)` runs a trial of n calls and tells whether it was GO.
    """
    n, good, bad = start or first, 0, None
    for _ in range(max_trials):
        if run(n):
            good = n
        else:
            bad = n
        if bad is None:
            n = math.ceil(n * growth)
        elif good == 0:
            if bad <= 1:
                return
            n = bad // 2
        elif bad - good <= max(1, good // 5):
            return
        else:
            n = (good + bad) // 2


def run_trial(engine: str, n: int, args: argparse.Namespace, round_: int = 0) -> Trial:
    """One fresh server, one `gonogo --calls n`; the server's CPU and RSS while the calls run."""
    database = common.temp_database()
    os.environ["DATABASE_URL"] = database
    loaded = common.load()
    ramp = min(5.0, 0.05 * n)
    env = {"STT_ENGINE": engine}
    if args.trace_writes:
        env["TRACE_WRITE_MS"] = f"{args.trace_writes_ms:g}"
    options = ["--calls", str(n), "--duration", f"{args.seconds:g}", "--ramp", f"{ramp:g}"]
    if args.pause is not None:
        options += ["--pause", f"{args.pause:g}"]
    with contextlib.ExitStack() as stack:
        fake = None
        if engine == "google":
            fake = stack.enter_context(common.fake_google(args, workers=2 * n + 16))
            env.update(common.google_env(fake))
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-wav-"))
            options += [x for path in common.scripted_wavs(workdir) for x in ("--wav", path)]
        server = stack.enter_context(common.server_for(args, env))
        pid = server.process.pid
        time.sleep(1.0)  # let start-up settle before the idle reading
        idle = common.rss_mb(pid)
        meter = common.Meter(pid)
        # The fake's own CPU, when there is one (not the server's again).
        fake_meter = common.Meter(fake.pid) if fake is not None else None
        with common.start_gonogo(args, server, database, *options) as gonogo:
            # Steady window: after start-up, ramp and the first seconds; before the hang-ups.
            time.sleep(3.0 + ramp + 1.0)
            # Ends a few seconds before the first hang-up: threads still alive for --profile.
            window_s = max(1.0, args.seconds - 6.0)
            meter.begin()
            if fake_meter is not None:
                fake_meter.begin()
            threads0 = common.thread_cpu(pid) if args.profile else {}
            path = f"{args.profile}.{engine}.{n}.{round_}"
            spy = common.profile(pid, window_s - 1.0, path) if args.profile else None
            time.sleep(window_s)
            busy = common.rss_mb(pid)
            meter.end()
            if fake_meter is not None:
                fake_meter.end()
            profile = ""
            if args.profile:
                threads = common.thread_cpu(pid)
                profile = common.thread_cpu_summary(threads0, threads, meter.wall_s, n)
            if spy is not None:
                spy.wait()
                profile += "\n" + common.profile_summary(path)
            out, _ = gonogo.communicate(timeout=args.seconds + 120)
            log = server.log_text()
    verdict = re.search(r"^(GO|NO-GO): (\d+/\d+) call", out, flags=re.MULTILINE)
    caller = re.search(r"^caller: ([\d.]+) % of a core .*?\(([\d.]+) % each\)", out, re.MULTILINE)
    # Each kind of reason once, with its worst figure (e.g. the highest write_ms p99).
    worst: dict[str, tuple[float, str]] = {}
    for reason in re.findall(r"^  - (.*?):", out, re.MULTILINE):
        kind = re.sub(r"[\d.]+", "N", reason)
        value = max((float(x) for x in re.findall(r"\d+\.\d+|\d+", reason)), default=0.0)
        if kind not in worst or value > worst[kind][0]:
            worst[kind] = (value, reason)
    reasons = [f"{reason} (worst)" for _, reason in worst.values()]
    if verdict is None:
        reasons = [f"gonogo gave no verdict: {out[-500:]!r}"]
    caller_line = (
        f"{caller.group(1)} % ({caller.group(2)} %/call)" if caller else "caller CPU unknown"
    )
    if fake_meter is not None:
        caller_line += f" + fake {fake_meter.share * 100:.0f} %"
    return Trial(
        slow_writes=(
            "\n      ".join(
                [
                    slow_writes(log, args.trace_writes_ms),
                    *re.findall(r"^  (STT writes: .*)$", out, re.MULTILINE),  # gonogo's, per call
                ]
            )
            if args.trace_writes
            else ""
        ),
        profile=profile,
        engine=engine,
        calls=n,
        go=gonogo.returncode == 0 and verdict is not None and verdict.group(1) == "GO",
        go_calls=verdict.group(2) if verdict else "?",
        reasons=reasons,
        server_share=meter.share,
        rss_per_call_mb=(busy - idle) / n,
        caller_line=caller_line,
        load=loaded,
    )


SLOW = re.compile(r"slow write \S+: ([\d.]+) ms = cpu ([\d.]+) \+ runqueue ([\d.]+) \+ blocked")


def slow_writes(log: str, threshold_ms: float = 1.0) -> str:
    """Sum the server's `slow write` trace lines: how long the writes took, and where."""
    rows = [tuple(float(x) for x in m) for m in SLOW.findall(log)]
    if not rows:
        return f"RX writes of {threshold_ms:g} ms or more: none"
    # schedstat accounts a wait when the thread gets the CPU, so a wait that began just
    # before the write can land inside it: compare the totals, not single writes.
    wall, cpu, runqueue = (sum(r[i] for r in rows) for i in range(3))
    waited = sum(r[2] >= r[0] / 2 for r in rows)
    blocked = sum(r[0] - r[1] - r[2] >= r[0] / 2 for r in rows)
    return (
        f"RX writes of {threshold_ms:g} ms or more: {len(rows)}, {wall:.1f} ms in all: on a CPU "
        f"{cpu:.1f} ms, waiting for one {runqueue:.1f} ms, blocked (GIL, a lock) "
        f"{wall - cpu - runqueue:.1f} ms; {waited} of {len(rows)} mostly waiting for a CPU, "
        f"{blocked} mostly blocked"
    )


if __name__ == "__main__":
    main()
