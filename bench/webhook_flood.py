"""Webhook flood: unsigned POSTs to the voice webhook as fast as they come, beside normal calls.

    python bench/webhook_flood.py                 # 10,000 unsigned webhooks beside 10 calls
    python bench/webhook_flood.py --rate 300      # offered at 300/s instead of flat out
    python bench/webhook_flood.py --quick         # 500 beside 2 calls (the smoke test)

The server (STT_ENGINE=none) runs on one core; on the other, `manage.py gonogo --calls N`
places the normal calls and judges them, and this process floods `POST /twilio/voice/`
without a signature while it sends a signed voice webhook every 100 ms, as Twilio would for
new calls. The flood goes as fast as the server answers (50 at a time), or at `--rate`
requests a second whatever the answers (up to 500 waiting at once). Printed:
- the flood: requests answered per second and their statuses;
- the server's log: bytes written per 10,000 refusals, the refusal lines apart from the
  access log's (uvicorn writes one line per request whatever the app does);
- the garbage collector's pauses while the flood ran (GC_PAUSE_LOG_MS=2: every pause of 2 ms
  or more is logged by telephony/process/gcwatch.py): how many, the longest;
- the signed webhooks' latency during the flood (they share the server with it);
- the normal calls' GO/NO-GO verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time

import common

GC_PAUSE = re.compile(r"gc pause (\d+) ms \(generation (\d)")
ACCESS = re.compile(r'"POST /twilio/voice/ HTTP/1\.1" 403')
# The app's own lines about a refused webhook (before: one "403 ..." per request; after: the
# first of each kind as "webhook refused: ...", then "webhook: N more refused ...").
OURS = re.compile(r"telephony\.\w+ (403 |webhook)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help="unsigned webhooks")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s offered (0: flat out)")
    parser.add_argument("--others", type=int, default=10, help="normal calls beside the flood")
    common.add_server_options(parser)
    parser.add_argument("--quick", action="store_true", help="500 requests beside 2 calls")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.others = 500, 2
    return args


async def flood(
    url: str, requests: int, concurrency: int, rate: float
) -> tuple[dict[int, int], float]:
    """POST `requests` unsigned voice webhooks: statuses, seconds until the last was answered.

    `rate` 0: `concurrency` at a time, each sent when one is answered; else one every 1/rate s.
    """
    import aiohttp

    statuses: dict[int, int] = {}

    async def one(http: aiohttp.ClientSession, n: int) -> None:
        form = {"CallSid": f"CA{n:032x}", "From": "+15005550006", "To": "+15005550001"}
        async with http.post(url, data=form) as response:
            await response.read()
            statuses[response.status] = statuses.get(response.status, 0) + 1

    t0 = time.monotonic()
    connector = aiohttp.TCPConnector(limit=concurrency if not rate else 500)
    async with aiohttp.ClientSession(connector=connector) as http:
        if not rate:
            queue = iter(range(requests))

            async def worker() -> None:
                for n in queue:
                    await one(http, n)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        else:
            sent = []
            for n in range(requests):
                await asyncio.sleep(max(0.0, t0 + n / rate - time.monotonic()))
                sent.append(asyncio.create_task(one(http, n)))
            await asyncio.gather(*sent)
    return statuses, time.monotonic() - t0


async def signed_webhooks(url: str, auth: str, stop: asyncio.Event) -> list[float]:
    """A signed voice webhook every 100 ms until `stop`: each one's latency, in ms."""
    import aiohttp
    from twilio.request_validator import RequestValidator

    from telephony.testing.caller import SIGNATURE_HEADER, new_sid

    validator = RequestValidator(auth)
    latencies = []
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            form = {"CallSid": new_sid("CA"), "From": "+15005550006", "To": "+15005550001"}
            headers = {SIGNATURE_HEADER: validator.compute_signature(url, form)}
            t0 = time.perf_counter()
            async with http.post(url, data=form, headers=headers) as response:
                await response.read()
                assert response.status == 200, response.status
            latencies.append((time.perf_counter() - t0) * 1000.0)
            await asyncio.sleep(0.1)
    return latencies


def main() -> None:
    args = parse_args()
    common.start()
    offered = f"at {args.rate:g}/s" if args.rate else f"flat out, {args.concurrency} at a time"
    common.pin_and_describe(args, f"STT_ENGINE=none; {args.requests} unsigned webhooks, {offered}")
    database = common.temp_database()
    common.setup_django(database)
    from django.conf import settings

    lead_s = 2.0 if args.quick else 4.0
    others_s = lead_s + (4.0 if args.quick else 40.0)
    env = {"STT_ENGINE": "none", "GC_PAUSE_LOG_MS": "2"}
    with common.server_for(args, env) as server:
        url = server.base_url + "/twilio/voice/"
        others = common.start_gonogo(
            args,
            server,
            database,
            *("--calls", str(args.others), "--duration", f"{others_s:g}", "--transcripts", "no"),
            *("--lead-silence", "0.5", "--pause", "1"),
        )
        time.sleep(lead_s)  # the gonogo process starts Django and dials; the calls settle
        log_before = len(server.log_text().encode())

        async def scenario() -> tuple[dict[int, int], float, list[float]]:
            stop = asyncio.Event()
            signed = asyncio.create_task(signed_webhooks(url, settings.TWILIO_AUTH_TOKEN, stop))
            statuses, seconds = await flood(url, args.requests, args.concurrency, args.rate)
            stop.set()
            return statuses, seconds, await signed

        loaded = common.load()
        statuses, seconds, latencies = asyncio.run(scenario())
        # The refusal log writes its summary when its 10 s window closes (not waited for when
        # --quick: the smoke test looks at the figures' shape only).
        time.sleep(0.5 if args.quick else max(0.5, 11.0 - seconds))
        during = server.log_text().encode()[log_before:].decode("utf-8", "replace")
        out, _ = others.communicate(timeout=others_s + 120)
    lines = during.splitlines()
    access = [line for line in lines if ACCESS.search(line)]
    refusal_lines = [line for line in lines if OURS.search(line)]
    pauses = [(int(m.group(1)), int(m.group(2))) for m in map(GC_PAUSE.search, lines) if m]
    per_10k = 10_000 / max(1, args.requests)
    verdict = re.search(r"^(GO|NO-GO): (\d+/\d+) call", out, flags=re.MULTILINE)
    print(
        f"flood: {args.requests} unsigned in {seconds:.1f} s = {args.requests / seconds:.0f}/s; "
        f"statuses {dict(sorted(statuses.items()))}; load at start {loaded}"
    )
    print(
        f"log per 10,000 refusals: {len(during.encode()) * per_10k / 1e6:.2f} MB in all; "
        f"refusal lines {len(refusal_lines)} ({sum(map(len, refusal_lines)) * per_10k / 1e3:.1f} "
        f"kB per 10,000); access log {len(access)} lines "
        f"({sum(map(len, access)) * per_10k / 1e3:.1f} kB per 10,000)"
    )
    print(
        f"gc pauses >= 2 ms during the flood: {len(pauses)}, longest "
        f"{max((p for p, _ in pauses), default=0)} ms; by generation "
        f"{ {g: sum(1 for _, gen in pauses if gen == g) for g in (0, 1, 2)} }"
    )
    print(
        f"signed webhooks during the flood: {len(latencies)}, latency ms p50 "
        f"{common.pct(latencies, 50):.1f} p95 {common.pct(latencies, 95):.1f} "
        f"max {max(latencies, default=0):.1f}"
    )
    reasons = sorted(set(re.findall(r"^  - (.*)$", out, flags=re.MULTILINE)))
    print(
        f"the other {args.others} calls: {verdict.group(0) if verdict else 'no verdict'}"
        + "".join(f"\n    - {r}" for r in reasons[:4])
    )
    for line in refusal_lines[:3]:
        print(f"  {line[:160]}")


if __name__ == "__main__":
    main()
