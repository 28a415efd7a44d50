"""Start-up: `start` -> first TX frame, and frames lost while the STT session opens (must be 0).

    python bench/startup.py                      # 20 calls one after another, then 20 at once
    python bench/startup.py --calls 20 --engine google   # (with the Google emulator env set)
    python bench/startup.py --quick              # 2 + 2 calls, STT_ENGINE=none (smoke test)

Server on one core (STT_ENGINE=whisper by default: its session opens in its own thread while
the greeting plays), callers on the other. Per call:
- server: `start` handled -> first TX frame handed to the socket (`first_tx_ms`, the session's
  own clock), how long the STT session took to open and how deep rx_q was when it was ready;
- caller: `start` sent -> first media received (adds the socket and both event loops);
- lost: frames received but never written to STT (in - written, drops, unwritten), from the
  session's `ended` line.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time

import common

READY = re.compile(r"call=(\w+) STT (\w+) ready in (\d+) ms \(rx q=(\d+)\)")
TARGET_FIRST_TX_MS = 50.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--engine", default="whisper")
    common.add_server_options(parser)
    parser.add_argument("--quick", action="store_true", help="2 + 2 calls, STT_ENGINE=none")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.engine = 2, "none"
    return args


def main() -> None:
    args = parse_args()
    common.start()
    common.pin_and_describe(args, f"STT_ENGINE={args.engine}")
    common.setup_django(common.temp_database())
    from django.conf import settings

    from calls.models import Call
    from telephony.testing.caller import dial, run, speech_audio

    audio = speech_audio("Hello, I am calling about my order.")
    token = settings.TWILIO_AUTH_TOKEN

    async def one(url: str):
        return await dial(
            url, auth_token=token, audio=audio, lead_silence_s=0.2, tail_silence_s=0.5
        )

    async def sequential(url: str, n: int):
        return [await one(url) for _ in range(n)]

    async def burst(url: str, n: int):
        return await asyncio.gather(*(one(url) for _ in range(n)))

    print(
        f"{'run':<14} {'calls':>5} | {'first TX ms (server) p50 p95 max':>32} | "
        f"{'first media ms (caller) p50 p95 max':>36} | {'STT open ms p50 max':>19} "
        f"{'rx q at ready max':>17} | lost | load"
    )
    with common.server_for(args, {"STT_ENGINE": args.engine}) as server:
        for name, runner in (("one at a time", sequential), ("all at once", burst)):
            loaded = common.load()
            reports = run(runner(server.base_url, args.calls))
            sids = [r.call_sid for r in reports]
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                logs = common.parse_log(server.log_text(), sids)
                if sum(c.ended is not None for c in logs.values()) == len(sids):
                    break
                time.sleep(0.2)
            time.sleep(0.5)  # the recorder writes the call's totals just after its end line
            text = server.log_text()
            ready = {m.group(1): m for m in READY.finditer(text) if m.group(1) in set(sids)}
            first_tx = [
                c.extra.get("first_tx_ms")
                for c in Call.objects.filter(call_sid__in=sids)
                if c.extra.get("first_tx_ms") is not None
            ]
            first_media = [r.first_media_ms for r in reports if r.first_media_ms is not None]
            opens = [float(m.group(3)) for m in ready.values()]
            depth = [int(m.group(4)) for m in ready.values()]
            lost = 0
            for c in logs.values():
                e = c.ended or {}
                lost += e.get("in", 0) - e.get("written", 0) + e.get("rx_drops", 0)
                lost += e.get("unwritten", 0)
            failed = sum(not r.ok for r in reports)
            print(
                f"{name:<14} {len(reports):>5} | {common.pct(first_tx, 50):>14.1f} "
                f"{common.pct(first_tx, 95):>8.1f} {max(first_tx, default=0):>8.1f} | "
                f"{common.pct(first_media, 50):>18.1f} {common.pct(first_media, 95):>8.1f} "
                f"{max(first_media, default=0):>8.1f} | {common.pct(opens, 50):>11.0f} "
                f"{max(opens, default=0):>7.0f} {max(depth, default=0):>17} | {lost:>4} | "
                f"{loaded}"
                + (f"  {failed} FAILED" if failed else "")
                + ("" if len(first_tx) == len(reports) else f"  ({len(first_tx)} with totals)")
            )
    print(f"target: first TX frame <= {TARGET_FIRST_TX_MS:.0f} ms after start; lost = 0")


if __name__ == "__main__":
    main()
