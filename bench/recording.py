"""Recording's cost: server CPU per call with recording off and on, and memory of a long call.

    python bench/recording.py                                 # 50 calls x 30 s, off/on twice
    python bench/recording.py --calls 50 --seconds 30 --rounds 3
    python bench/recording.py --soak-minutes 30               # one recorded call of 30 min
    python bench/recording.py --quick                         # 2 calls x 4 s: a smoke run

CPU: two servers run side by side from the start of the run, the same in all but `RECORDING`
(both pinned to the server core, callers on the other). Each round places `--calls` calls on
the server without recording, then on the one with it, and measures the busy server's CPU
over the steady part of its calls (the idle one is measured too: it should be ~0). The target
is recording on costing at most 10 % more server CPU per call.

Soak: one call of `--soak-minutes` on a recording server, its RSS sampled every 30 s. Flat
means the recording costs memory for what the writer holds (seconds), not for the call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import common

TARGET_EXTRA = 0.10


def thread_cpu_seconds(pid: int, prefix: str) -> float:
    """CPU seconds of a process's threads whose OS name starts with `prefix`."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            if (task / "comm").read_text().startswith(prefix):
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / common.CLK_TCK
    return total


def hand_off_us() -> tuple[float, float]:
    """Microseconds per frame the audio path spends on recording: (RX side, TX side)."""
    import timeit

    from telephony.media.audio import SILENCE_FRAME
    from telephony.recording.tap import RecordingTap

    tap = RecordingTap("CA-bench", max_frames=10**9)
    n = 200_000
    rx = timeit.timeit(lambda: tap.caller(SILENCE_FRAME, 0), number=n) / n * 1e6
    slot = iter(range(10**9))
    tx = timeit.timeit(lambda: tap.line(SILENCE_FRAME, next(slot)), number=n) / n * 1e6
    return rx, tx


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50, help="concurrent calls per run")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each call")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs")
    parser.add_argument("--soak-minutes", type=float, default=0.0, help="one long call instead")
    parser.add_argument(
        "--soak-off", action="store_true", help="the long call without recording (to compare)"
    )
    common.add_server_options(parser)
    parser.add_argument("--quick", action="store_true", help="2 calls x 4 s: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.seconds, args.rounds = 2, 4.0, 1
    return args


@dataclass
class Run:
    recording: bool
    calls: int
    failed: int
    server_share: float
    idle_share: float
    rss_per_call_mb: float
    rx_drops: int
    tx_drops: int
    recording_dropped: int
    stored: int
    writer_share: float
    load: str

    @property
    def pct_per_call(self) -> float:
        return self.server_share * 100 / self.calls

    def row(self) -> str:
        return (
            f"{'on' if self.recording else 'off':>9} | {self.calls:>5} {self.failed:>6} | "
            f"{self.server_share * 100:>8.1f} {self.pct_per_call:>9.3f} "
            f"{self.idle_share * 100:>6.2f} | {self.rss_per_call_mb:>7.2f} | "
            f"{self.rx_drops:>3}/{self.tx_drops:<3} {self.recording_dropped:>9} "
            f"{self.stored:>6} | {self.writer_share * 100:>8.2f} | {self.load}"
        )


HEADER = (
    f"{'recording':>9} | {'calls':>5} {'failed':>6} | {'server %':>8} {'%/call':>9} "
    f"{'idle %':>6} | {'RSS/call':>7} | {'RX/TX drops':>7} {'rec drops':>9} {'stored':>6} | "
    f"{'writer %':>8} | load"
)


def server_env(media: Path, recording: bool) -> dict[str, str]:
    return {
        "STT_ENGINE": "none",
        "RECORDING": "true" if recording else "false",
        "MEDIA_ROOT": str(media / "media"),
        "RECORDING_SPOOL_DIR": str(media / "spool"),
    }


async def one_run(
    busy, idle, recording: bool, n: int, seconds: float, *, audio: bytes, tail_s: float, token: str
) -> Run:
    from telephony.testing.caller import dial_many

    loaded = common.load()
    ramp = min(2.0, 0.02 * n)
    srv, other = common.Meter(busy.process.pid), common.Meter(idle.process.pid)
    rss_idle = common.rss_mb(busy.process.pid)
    rss_busy: list[float] = []

    writer: list[float] = []

    async def sample() -> None:
        await asyncio.sleep(ramp + 1.0)
        srv.begin(), other.begin()
        writer.append(thread_cpu_seconds(busy.process.pid, "recording-"))
        await asyncio.sleep(max(0.5, seconds - 2.0))
        rss_busy.append(common.rss_mb(busy.process.pid))
        writer.append(thread_cpu_seconds(busy.process.pid, "recording-"))
        srv.end(), other.end()

    sampler = asyncio.create_task(sample())
    reports = await dial_many(
        n,
        busy.base_url,
        auth_token=token,
        audio=audio,
        lead_silence_s=0.5,
        tail_silence_s=tail_s,
        ramp_s=ramp,
    )
    await sampler
    sids = [r.call_sid for r in reports]
    deadline = time.monotonic() + 20
    while True:  # every call ended, and (recording on) every recording stored
        log = busy.log_text()
        logs = common.parse_log(log, sids)
        ended = sum(c.ended is not None for c in logs.values())
        stored = sum(f"call={sid} recording stored" in log for sid in sids)
        if (ended == n and (stored == n or not recording)) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    dropped = sum(
        int(line.split("recording: ")[1].split()[0])
        for line in log.splitlines()
        if "frame(s) dropped" in line and any(f"call={sid} " in line for sid in sids)
    )
    return Run(
        recording=recording,
        calls=n,
        failed=sum(not r.ok for r in reports),
        server_share=srv.share,
        idle_share=other.share,
        rss_per_call_mb=(rss_busy[0] - rss_idle) / n if rss_busy else 0.0,
        rx_drops=sum((c.ended or {}).get("rx_drops", 0) for c in logs.values()),
        tx_drops=sum((c.ended or {}).get("tx_drops", 0) for c in logs.values()),
        recording_dropped=dropped,
        stored=stored,
        writer_share=(writer[1] - writer[0]) / srv.wall_s if len(writer) == 2 else 0.0,
        load=loaded,
    )


def cpu(args, audio: bytes, tail_s: float, token: str) -> None:
    from telephony.testing.caller import run

    rx_us, tx_us = hand_off_us()
    print(f"# the audio path's share: {rx_us:.2f} us per frame on RX, {tx_us:.2f} us on TX")
    with contextlib.ExitStack() as stack:
        media = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-rec-")))
        servers = {
            rec: stack.enter_context(common.server_for(args, server_env(media, rec)))
            for rec in (False, True)
        }
        print(HEADER, flush=True)
        runs: list[Run] = []
        for _ in range(args.rounds):
            for rec in (False, True):
                figures = run(
                    one_run(
                        servers[rec], servers[not rec], rec, args.calls, args.seconds,
                        audio=audio, tail_s=tail_s, token=token,
                    )
                )  # fmt: skip
                runs.append(figures)
                print(figures.row(), flush=True)
    off = common.median([r.pct_per_call for r in runs if not r.recording])
    on = common.median([r.pct_per_call for r in runs if r.recording])
    extra = on / off - 1 if off else 0.0
    verdict = "met" if extra <= TARGET_EXTRA else "NOT met"
    pairs = [
        b.pct_per_call / a.pct_per_call - 1
        for a, b in zip(runs[0::2], runs[1::2], strict=True)
        if a.pct_per_call
    ]
    writer = common.median([r.writer_share * 100 / r.calls for r in runs if r.recording])
    print(
        f"=> {args.calls} calls: server {off:.3f} % of a core per call without recording, "
        f"{on:.3f} % with it (medians of {args.rounds}): {extra * 100:+.1f} %; "
        f"target <= +{TARGET_EXTRA * 100:.0f} %: {verdict}",
        flush=True,
    )
    print(
        f"   each round on vs off: {', '.join(f'{p * 100:+.1f} %' for p in pairs)}; "
        f"the writer thread alone: {writer:.4f} % of a core per call",
        flush=True,
    )


def soak(args, audio: bytes, tail_s: float, token: str) -> None:
    from telephony.testing.caller import dial, run

    with contextlib.ExitStack() as stack:
        media = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-rec-")))
        recording = not args.soak_off
        server = stack.enter_context(common.server_for(args, server_env(media, recording)))
        pid = server.process.pid
        samples: list[tuple[float, float]] = []
        print(f"{'minute':>6} | {'RSS MB':>7} | {'spool MB':>8} | load", flush=True)

        async def watch(t0: float) -> None:
            while True:
                await asyncio.sleep(30)
                minute = (time.monotonic() - t0) / 60
                rss = common.rss_mb(pid)
                spool = sum(p.stat().st_size for p in (media / "spool").glob("*")) / 1e6
                samples.append((minute, rss))
                print(f"{minute:>6.1f} | {rss:>7.2f} | {spool:>8.2f} | {common.load()}", flush=True)

        async def call() -> object:
            t0 = time.monotonic()
            watcher = asyncio.create_task(watch(t0))
            report = await dial(
                server.base_url, auth_token=token, audio=audio, lead_silence_s=0.5,
                tail_silence_s=tail_s, timeout_s=30,
            )  # fmt: skip
            watcher.cancel()
            return report

        report = run(call())
        deadline = time.monotonic() + 30
        while (
            recording
            and "recording stored" not in server.log_text()
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        stored = [line for line in server.log_text().splitlines() if "recording stored" in line]
    print(f"call: {report.summary()}")  # type: ignore[attr-defined]
    if recording:
        print(f"stored: {stored[-1].split('recording stored: ')[1] if stored else 'NOT stored'}")
    later = [(m, r) for m, r in samples if m >= 2.0]
    if len(later) >= 2:
        (m0, r0), (m1, r1) = later[0], later[-1]
        slope = (r1 - r0) / (m1 - m0)
        disk = f"on: the spool file grew {(m1 - m0) * 0.96:.1f} MB meanwhile"
        print(
            f"=> RSS from minute {m0:.0f} to {m1:.0f}: {r0:.2f} -> {r1:.2f} MB "
            f"({slope * 1000:+.1f} kB/min; recording {disk if recording else 'off'})",
            flush=True,
        )


def main() -> None:
    args = parse_args()
    common.start()
    what = (
        f"one {'unrecorded' if args.soak_off else 'recorded'} call of {args.soak_minutes:g} min"
        if args.soak_minutes
        else f"{args.calls} calls x {args.seconds:g} s, recording off then on, {args.rounds} rounds"
    )
    common.pin_and_describe(args, f"STT_ENGINE=none; {what}")
    common.setup_django(common.temp_database())
    from django.conf import settings

    from calls.gonogo_run import UTTERANCES, speech_plan
    from telephony.testing.caller import speech_audio

    seconds = args.soak_minutes * 60 if args.soak_minutes else args.seconds
    audio, tail, _ = speech_plan(
        [speech_audio(t) for t in UTTERANCES], duration_s=seconds, lead_s=0.5, pause_s=1.0
    )
    if args.soak_minutes:
        soak(args, audio, tail, settings.TWILIO_AUTH_TOKEN)
    else:
        cpu(args, audio, tail, settings.TWILIO_AUTH_TOKEN)


if __name__ == "__main__":
    main()
