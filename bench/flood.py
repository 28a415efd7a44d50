"""Flood: one call sends media 10x faster than real time; memory stays flat, others stay GO.

    python bench/flood.py                        # 10x for 30 s beside 10 normal calls, twice
    python bench/flood.py --limit off --flood-seconds 60
    python bench/flood.py --quick                # 10x for 2 s beside 2 calls (the smoke test)

The server (STT_ENGINE=none) runs on one core. On the other, `manage.py gonogo --calls N`
places the normal calls and judges them, and this process dials the flooding call. The
server's RSS is read every second. Two runs:
- `--limit on`: the server as configured; its per-stream message limit
  (STREAM_MAX_MESSAGES_PER_S) cuts the flooding call once its burst allowance is spent;
- `--limit off`: the limit lifted, so the flood runs its whole length into the bounded RX
  queue: drop-oldest must keep RSS flat and count every frame it drops.
Either way the other calls must stay GO.
"""

from __future__ import annotations

import argparse
import os
import re
import threading
import time

import common

LIMITS = {"on": {}, "off": {"STREAM_MAX_MESSAGES_PER_S": "1000000"}}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--flood-seconds", type=float, default=30.0, help="wall seconds")
    parser.add_argument("--others", type=int, default=10, help="normal calls beside the flood")
    parser.add_argument("--limit", choices=["on", "off", "both"], default="both")
    common.add_server_options(parser)
    parser.add_argument("--quick", action="store_true", help="10x for 2 s beside 2 calls")
    args = parser.parse_args()
    if args.quick:
        args.flood_seconds, args.others, args.limit = 2.0, 2, "off"
    return args


def main() -> None:
    args = parse_args()
    common.start()
    common.pin_and_describe(args, f"STT_ENGINE=none; {args.speed:g}x for {args.flood_seconds:g} s")
    common.setup_django(common.temp_database())
    from telephony.testing.caller import speech_audio

    # The flood: speech looped to fill flood_seconds of wall time at `speed`.
    phrase = speech_audio("I would like to check the status of my order, please.")
    needed = int(args.flood_seconds * args.speed * 8000)
    audio = (phrase * (needed // len(phrase) + 1))[:needed]
    for limit in ("on", "off") if args.limit == "both" else (args.limit,):
        flood_run(args, limit, audio)


def flood_run(args: argparse.Namespace, limit: str, audio: bytes) -> None:
    """One server, the others judged by gonogo, one flooding call; print what happened."""
    from django.conf import settings

    from telephony.testing.caller import dial, run

    database = common.temp_database()
    os.environ["DATABASE_URL"] = database
    lead_s = 2.0 if args.quick else 3.0  # the others are up and steady before the flood
    others_s = lead_s + args.flood_seconds + (2.0 if args.quick else 4.0)
    env = {"STT_ENGINE": "none", **LIMITS[limit]}
    print(f"\n## message limit {limit}; load {common.load()}", flush=True)
    with common.server_for(args, env) as server:
        pid = server.process.pid
        rss: list[tuple[float, float]] = []
        stop = threading.Event()

        def sample() -> None:
            t0 = time.monotonic()
            while not stop.is_set():
                rss.append((time.monotonic() - t0, common.rss_mb(pid)))
                stop.wait(1.0)

        sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
        sampler.start()
        others = common.start_gonogo(
            args,
            server,
            database,
            *("--calls", str(args.others), "--duration", f"{others_s:g}", "--transcripts", "no"),
            *("--lead-silence", "0.5", "--pause", "1"),
        )
        time.sleep(2.0)  # the gonogo process starts Django and dials
        flood_started = time.monotonic()
        report = run(
            dial(
                server.base_url,
                auth_token=settings.TWILIO_AUTH_TOKEN,
                audio=audio,
                lead_silence_s=lead_s * args.speed,  # sent at `speed` too: lead_s of wall time
                tail_silence_s=0.0,
                speed=args.speed,
                timeout_s=30.0,
            )
        )
        flood_wall = time.monotonic() - flood_started
        out, _ = others.communicate(timeout=others_s + 120)
        stop.set()
        sampler.join()
        deadline = time.monotonic() + 10
        sid = report.call_sid
        while time.monotonic() < deadline:
            logs = common.parse_log(server.log_text(), [sid])
            if sid in logs and logs[sid].ended is not None:
                break
            time.sleep(0.2)
        log = server.log_text()
    flood = logs.get(sid)
    ended = (flood.ended if flood else None) or {}
    rx_rows = flood.rx if flood else []
    outcome = "hung up normally" if report.ok else f"cut by the server ({report.error})"
    print(
        f"flood call: sent {report.frames_sent} frames in {flood_wall:.1f} s wall = "
        f"{report.frames_sent / max(flood_wall, 1e-9):.0f} fps ({args.speed:g}x); {outcome}"
    )
    print(
        f"  server: received {ended.get('in', '?')}, written to STT {ended.get('written', '?')}, "
        f"dropped {ended.get('rx_drops', '?')} (drop-oldest, counted); fps_in max "
        f"{max((r['fps_in'] for r in rx_rows), default=0):.0f}; RX q max "
        f"{max((r['q'] for r in rx_rows), default=0):.0f}"
    )
    start_s = 2.0  # the flood's first frame, on the sampler's clock (gonogo dials first)
    during = [mb for t, mb in rss if start_s + 2.0 <= t <= start_s + flood_wall]
    before = [mb for t, mb in rss if t < start_s]
    print(
        f"  server RSS MB: before the flood {before[-1] if before else 0:.1f}, during it "
        f"{min(during, default=0):.1f}-{max(during, default=0):.1f}, after "
        f"{rss[-1][1] if rss else 0:.1f}; slope over its last {len(during)} s "
        f"{rss_slope(during):+.3f} MB/s"
    )
    print("  RSS each second: " + " ".join(f"{mb:.1f}" for _, mb in rss))
    verdict = re.search(r"^(GO|NO-GO): (\d+/\d+) call", out, flags=re.MULTILINE)
    reasons = sorted(set(re.findall(r"^  - (.*)$", out, flags=re.MULTILINE)))
    print(
        f"  the other {args.others} calls: {verdict.group(0) if verdict else 'no verdict'}"
        + "".join(f"\n    - {r}" for r in reasons[:5])
    )
    notable = [line for line in log.splitlines() if " WARNING " in line or " ERROR " in line]
    shown = "".join(f"\n    {line[:200]}" for line in notable[:4])
    print(f"  server warnings/errors: {len(notable)}{shown}", flush=True)


def rss_slope(values: list[float]) -> float:
    """Least-squares slope of one-second RSS readings, in MB per second."""
    from telephony.metrics.stats import slope

    return slope(list(enumerate(values)))


if __name__ == "__main__":
    main()
