"""Pacing: how evenly 20 ms frames flow both ways, at 1, 10, 50 and 100 concurrent calls.

    python bench/pacing.py                           # 1, 10, 50, 100 calls x 30 s
    python bench/pacing.py --levels 50 --seconds 60
    python bench/pacing.py --quick                   # 2 calls x 4 s (the smoke test)
    python bench/pacing.py --levels 50 --scrape-every 5   # with Prometheus reading /metrics

The server (STT_ENGINE=none, RX_CADENCE_STATS=1) runs on one core, the simulated callers on the
other. Per level it prints:
- TX: |interval - 20 ms| between media frames as each caller receives them (p50 = median of the
  calls' medians, p99 = median and worst of the calls' p99, max = worst), measured with
  perf_counter in the caller; TX fps = frames the server sent per second ([TX] lines);
- RX: |interval - 20 ms| between the RX thread's write ticks inside the server, all calls'
  histograms merged (RX_CADENCE_STATS), and fps_in ([RX] lines);
- real time: audio delivered per wall second (1.000 = real time), TX as the callers received
  it and RX as the server wrote it to STT, over the steady part of the run;
- the server's CPU and RSS per call (steady window), and the callers' own CPU;
- with --scrape-every S: GET /metrics every S seconds through the run, as Prometheus does (the
  scrapes' own time is printed, and their CPU is in the server's).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

import common

TARGET_P99_MS = 2.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,10,50,100", help="concurrent calls per run")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each call")
    common.add_server_options(parser)
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="py-spy the server over each level's steady window (GIL samples, raw stacks to "
        "PATH.<calls>) and print where the time went",
    )
    parser.add_argument(
        "--scrape-every",
        type=float,
        default=0.0,
        metavar="S",
        help="GET /metrics every S seconds while the calls run (0: never)",
    )
    parser.add_argument("--quick", action="store_true", help="2 calls x 4 s: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.levels, args.seconds = "2", 4.0
    args.levels = [int(n) for n in args.levels.split(",")]
    return args


def main() -> None:
    args = parse_args()
    common.start()
    common.pin_and_describe(args, f"STT_ENGINE=none; calls of {args.seconds:g} s")
    common.setup_django(common.temp_database())
    from django.conf import settings

    from calls.gonogo_run import UTTERANCES, speech_plan
    from telephony.testing.caller import run, speech_audio

    audio, tail, _ = speech_plan(
        [speech_audio(t) for t in UTTERANCES], duration_s=args.seconds, lead_s=0.5, pause_s=1.0
    )
    env = {"STT_ENGINE": "none", "RX_CADENCE_STATS": "1"}
    with common.server_for(args, env) as server:
        print(HEADER)
        for n in args.levels:
            figures = run(
                level(
                    server,
                    n,
                    args.seconds,
                    audio=audio,
                    tail_s=tail,
                    token=settings.TWILIO_AUTH_TOKEN,
                    profile=f"{args.profile}.{n}" if args.profile else None,
                    scrape_every_s=args.scrape_every,
                )
            )
            print(figures.row(), flush=True)
            if figures.scrapes:
                print(f"      {figures.scrapes}", flush=True)
            if args.profile:
                print(common.profile_summary(f"{args.profile}.{n}"), flush=True)


HEADER = (
    f"{'calls':>5} | {'TX |int-20| ms p50 p99(med/worst) max':>37} {'fps':>5} {'rt':>6} | "
    f"{'RX |int-20| p50 p99 max':>24} {'fps':>5} {'rt':>6} | "
    f"{'server %core/call':>17} {'RSS MB/call':>11} | {'callers %core':>13} | load"
)


@dataclass
class Level:
    """The figures of one run of `calls` concurrent calls."""

    calls: int
    tx_p50: float
    tx_p99_median: float
    tx_p99_worst: float
    tx_max: float
    tx_fps: float
    tx_rt: float
    rx_p50: float
    rx_p99: float
    rx_max: float
    rx_fps: float
    rx_rt: float
    server_share: float
    rss_per_call_mb: float
    caller_share: float
    load: str
    failed: str = ""
    scrapes: str = ""  # with --scrape-every: how many, and how long each took

    @property
    def server_pct_per_call(self) -> float:
        return self.server_share * 100 / self.calls

    def row(self) -> str:
        n = self.calls
        return (
            f"{n:>5} | {self.tx_p50:>9.2f} {self.tx_p99_median:>6.2f}/{self.tx_p99_worst:<6.2f} "
            f"{self.tx_max:>7.1f}     {self.tx_fps:>5.1f} {self.tx_rt:>6.3f} | "
            f"{self.rx_p50:>9.1f} {self.rx_p99:>5.1f} {self.rx_max:>6.1f}   {self.rx_fps:>5.1f} "
            f"{self.rx_rt:>6.3f} | {self.server_pct_per_call:>17.2f} "
            f"{self.rss_per_call_mb:>11.2f} | {self.caller_share * 100:>6.1f} "
            f"({self.caller_share * 100 / n:.2f}/call) | {self.load}{self.failed}"
        )


async def level(
    server,
    n: int,
    seconds: float,
    *,
    audio: bytes,
    tail_s: float,
    token: str,
    profile: str | None = None,
    scrape_every_s: float = 0.0,
) -> Level:
    """Run `n` calls at once and measure them."""
    from telephony.metrics.stats import histogram_percentile
    from telephony.testing.caller import dial_many

    loaded = common.load()
    ramp = min(2.0, 0.02 * n)
    progress: dict[str, list[tuple[float, int, int]]] = {}

    def on_progress(report) -> None:
        progress.setdefault(report.call_sid, []).append(
            (time.perf_counter(), report.frames_received, report.frames_sent)
        )

    srv, callers = common.Meter(server.process.pid), common.Meter()
    rss_idle = common.rss_mb(server.process.pid)
    rss_busy: list[float] = []

    async def sample() -> None:
        # The steady window: every call is up (after the ramp) and none has hung up yet.
        await asyncio.sleep(ramp + 1.0)
        srv.begin(), callers.begin()
        spy = common.profile(server.process.pid, seconds - 3.0, profile) if profile else None
        await asyncio.sleep(max(0.5, seconds - 2.0))
        if spy is not None:
            await asyncio.to_thread(spy.wait)
        rss_busy.append(common.rss_mb(server.process.pid))
        srv.end(), callers.end()

    sampler = asyncio.create_task(sample())
    scrape_ms: list[float] = []
    scraper = (
        asyncio.create_task(scrape(server.base_url, scrape_every_s, scrape_ms))
        if scrape_every_s > 0
        else None
    )
    reports = await dial_many(
        n,
        server.base_url,
        auth_token=token,
        audio=audio,
        lead_silence_s=0.5,
        tail_silence_s=tail_s,
        ramp_s=ramp,
        on_progress=on_progress,
    )
    await sampler
    if scraper is not None:
        scraper.cancel()
    failed = [r for r in reports if not r.ok]
    logs = await wait_for_ends(server, [r.call_sid for r in reports])

    tx_p99s = [r.jitter_p99_ms for r in reports]
    tx_fps = [row["fps"] for c in logs.values() for row in common.steady(c.tx)]
    rx_fps = [row["fps_in"] for c in logs.values() for row in common.steady(c.rx)]
    written = sum((c.ended or {}).get("written", 0) for c in logs.values())
    received = sum((c.ended or {}).get("in", 0) for c in logs.values())
    merged: dict[int, int] = {}
    for c in logs.values():
        for bucket, count in c.cadence_hist.items():
            merged[bucket] = merged.get(bucket, 0) + count
    return Level(
        calls=n,
        tx_p50=common.median([r.jitter_p50_ms for r in reports]),
        tx_p99_median=common.median(tx_p99s),
        tx_p99_worst=max(tx_p99s),
        tx_max=max(r.jitter_max_ms for r in reports),
        tx_fps=mean(tx_fps),
        tx_rt=common.median([ratio(p, 1) for p in progress.values() if len(p) > 3]),
        rx_p50=histogram_percentile(merged, 50),
        rx_p99=histogram_percentile(merged, 99),
        rx_max=max((c.cadence_max_ms for c in logs.values()), default=0.0),
        rx_fps=mean(rx_fps),
        # The RX thread writes what arrives (written == in unless frames were lost): frames
        # received per wall second, scaled by the share written.
        rx_rt=mean(rx_fps) / 50 * (written / received if received else 0.0),
        server_share=srv.share,
        rss_per_call_mb=(rss_busy[0] - rss_idle) / n if rss_busy else 0.0,
        caller_share=callers.share,
        load=loaded,
        failed="" if not failed else f"  {len(failed)} FAILED: {failed[0].error}",
        scrapes=(
            f"/metrics scraped {len(scrape_ms)} times: {mean(scrape_ms):.1f} ms each on "
            f"average, {max(scrape_ms):.1f} at most (request to last byte)"
            if scrape_ms
            else ""
        ),
    )


async def scrape(base_url: str, every_s: float, took_ms: list[float]) -> None:
    """GET /metrics every `every_s` seconds (in a thread: the callers' loop must not wait)."""
    import urllib.request

    def get() -> float:
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as response:
            response.read()
        return (time.perf_counter() - t0) * 1000

    while True:
        await asyncio.sleep(every_s)
        took_ms.append(await asyncio.to_thread(get))


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def ratio(samples: list[tuple[float, int, int]], index: int) -> float:
    """Frames per wall second / 50 between a call's second and second-to-last progress sample."""
    first, last = samples[1], samples[-2]
    elapsed = last[0] - first[0]
    return (last[index] - first[index]) / elapsed / 50 if elapsed > 0 else 0.0


async def wait_for_ends(server, sids: list[str], timeout_s: float = 15.0):
    """Wait until the server has logged every call's end; return the calls' log figures."""
    deadline = time.monotonic() + timeout_s
    while True:
        logs = common.parse_log(server.log_text(), sids)
        done = sum(c.ended is not None for c in logs.values())
        if done == len(sids) or time.monotonic() > deadline:
            return logs
        await asyncio.sleep(0.2)


if __name__ == "__main__":
    main()
