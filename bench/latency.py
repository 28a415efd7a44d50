"""Latency: end of speech -> FINAL, and barge-in (VAD trigger) -> `clear` at the caller.

    python bench/latency.py                      # 24 utterances (3 calls x 8), 20 barge-ins
    python bench/latency.py --utterances 40 --barge-ins 40 --no-pin
    python bench/latency.py --quick              # 2 utterances, 2 barge-ins (the smoke test)

One real server with the embedded engine (STT_ENGINE=whisper) and the default greeting, pinned
to one core; the simulated callers on the other.

- FINAL: calls that listen to the greeting, then say scripted utterances (espeak) each followed
  by 2.5 s of silence, one call at a time. The figure is the server's own `latency_ms` on each
  `✅ [FINAL]` line: from the end of the caller's speech (the last speech frame by the VAD) to
  the FINAL, local or from the engine. Utterances without a FINAL are counted.
- clear: calls that talk over the greeting 1.5 s in (0.5 s with --quick's short greeting), a few
  at a time. The figure is from the
  server's `barge-in` log line (written right after the VAD trigger queued the `clear`) to the
  caller receiving `clear` (perf_counter in the caller): the whole way out, through the TX
  tick, the event loop and the socket. The server's log stamps have millisecond resolution
  (truncated), so figures are exact to about 1 ms, on the high side.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time

import common

FINAL = re.compile(r"✅ \[FINAL\] call=(\w+) .*\(latency_ms=(\d+)(, local)?\)")
PARTIAL = re.compile(r"🟡 \[PARTIAL\] call=(\w+) ")
BARGE_IN = re.compile(r"call=(\w+) barge-in: ")
UTTERANCES = (
    "I would like to check the status of my order.",
    "My order number is four five six seven.",
    "Can you tell me when it will arrive?",
    "I need to change the delivery address.",
    "Please send the invoice to my email.",
    "Is there a fee for express shipping?",
    "I would like to cancel the second item.",
    "Thank you, that is all for today.",
)
TARGET_FINAL_P95_MS = 500.0
TARGET_CLEAR_P95_MS = 40.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=24)
    parser.add_argument("--per-call", type=int, default=8, help="utterances per call")
    parser.add_argument("--pause", type=float, default=2.5, help="silence after each (s)")
    parser.add_argument("--barge-ins", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=4, help="barge-in calls at a time")
    common.add_server_options(parser)
    parser.add_argument("--quick", action="store_true", help="2 utterances, 2 barge-ins")
    args = parser.parse_args()
    if args.quick:
        args.utterances, args.per_call, args.barge_ins, args.concurrency = 2, 2, 2, 2
        args.pause = 1.5
    return args


def main() -> None:
    args = parse_args()
    common.start()
    common.pin_and_describe(args, "STT_ENGINE=whisper")
    common.setup_django(common.temp_database())
    from django.conf import settings

    from calls.gonogo_run import speech_plan
    from telephony.testing.caller import dial, run, speech_audio

    token = settings.TWILIO_AUTH_TOKEN
    spoken = [speech_audio(t) for t in UTTERANCES]
    greeting = "Hello, how can I help?" if args.quick else settings.GREETING_TEXT
    greeting_s = len(speech_audio(greeting)) / 8000
    barge_at_s = 0.5 if args.quick else 1.5  # into the greeting

    env = {"STT_ENGINE": "whisper", "GREETING_TEXT": greeting}
    with common.server_for(args, env) as server:
        # --- end of speech -> FINAL, one call at a time
        loaded = common.load()
        final_sids, said = [], 0
        left = args.utterances
        while left > 0:
            n = min(args.per_call, left)
            offset = said % len(spoken)
            utterances = (spoken[offset:] + spoken[:offset])[:n]
            lead = greeting_s + 0.7  # listen to the greeting: no barge-in here
            length = lead + sum(len(u) / 8000 + args.pause for u in utterances)
            audio, tail, count = speech_plan(
                utterances, duration_s=length, lead_s=lead, pause_s=args.pause
            )
            report = run(
                dial(
                    server.base_url,
                    auth_token=token,
                    audio=audio,
                    lead_silence_s=lead,
                    tail_silence_s=tail + 0.5,
                )
            )
            final_sids.append(report.call_sid)
            said += count
            left -= count
        finals = wait_for(server, lambda text: finals_of(text, final_sids), said)
        latencies = [ms for ms, _, _ in finals]
        local = sum(is_local for _, is_local, _ in finals)
        print(
            f"FINAL: {len(finals)} of {said} utterances got a FINAL; latency_ms from the end of "
            f"speech p50 {common.pct(latencies, 50):.0f}, p95 {common.pct(latencies, 95):.0f}, "
            f"max {max(latencies, default=0):.0f} ({local} local, {len(finals) - local} from "
            f"the engine); target p95 <= {TARGET_FINAL_P95_MS:.0f}; load {loaded}"
        )
        for had, label in ((True, "with"), (False, "without")):
            part = [ms for ms, _, h in finals if h == had]
            if part:
                p50, p95 = common.pct(part, 50), common.pct(part, 95)
                print(
                    f"  {len(part)} {label} a partial before the FINAL: "
                    f"p50 {p50:.0f}, p95 {p95:.0f}, max {max(part):.0f}"
                )
        print(
            "  each (L local, E engine; * no partial before it): "
            + " ".join(f"{ms:.0f}{'L' if lo else 'E'}{'' if h else '*'}" for ms, lo, h in finals)
        )

        # --- barge-in -> clear, a few calls at a time
        loaded = common.load()
        offset = time.time() - time.perf_counter()  # the caller's clock -> wall clock

        async def barge(k: int):
            await asyncio.sleep(0.3 * k)  # spread the triggers a little
            return await dial(
                server.base_url,
                auth_token=token,
                audio=spoken[k % len(spoken)],
                lead_silence_s=barge_at_s,
                tail_silence_s=1.0,
            )

        async def barges(n: int):
            return await asyncio.gather(*(barge(k) for k in range(n)))

        reports = []
        for start in range(0, args.barge_ins, args.concurrency):
            reports += run(barges(min(args.concurrency, args.barge_ins - start)))
        sids = {r.call_sid: r for r in reports}
        triggers = wait_for(server, lambda text: barge_ins_of(text, sids), len(sids))
        clears = []
        for sid, at in triggers:
            report = sids[sid]
            if report.clear_at:
                clears.append((report.clear_at[0] + offset - at) * 1000)
        print(
            f"clear: {len(clears)} of {len(reports)} barge-ins got a clear; from the server's "
            f"trigger to the caller's receipt p50 {common.pct(clears, 50):.1f} ms, p95 "
            f"{common.pct(clears, 95):.1f} ms, max {max(clears, default=0):.1f} ms; target "
            f"p95 <= {TARGET_CLEAR_P95_MS:.0f}; load {loaded}"
        )
        print("  each: " + " ".join(f"{ms:.1f}" for ms in sorted(clears)))


def finals_of(text: str, sids: list[str]) -> list[tuple[float, bool, bool]]:
    """(latency_ms, local, had a partial) of each FINAL the server logged for `sids`.

    "had a partial": the engine had published words for the utterance before its FINAL. Without
    one, a local FINAL could only come with the engine's first words, however late they were.
    """
    wanted = set(sids)
    partial_since_final: dict[str, bool] = {}
    found = []
    for line in text.splitlines():
        if (m := PARTIAL.search(line)) and m.group(1) in wanted:
            partial_since_final[m.group(1)] = True
        elif (m := FINAL.search(line)) and m.group(1) in wanted:
            had = partial_since_final.pop(m.group(1), False)
            found.append((float(m.group(2)), bool(m.group(3)), had))
    return found


def barge_ins_of(text: str, sids) -> list[tuple[str, float]]:
    """(call, wall-clock time) of each barge-in the server logged for `sids`."""
    found = []
    for line in text.splitlines():
        m = BARGE_IN.search(line)
        if m and m.group(1) in sids and (at := common.log_time(line)) is not None:
            found.append((m.group(1), at))
    return found


def wait_for(server, collect, expected: int, timeout_s: float = 15.0):
    """Collect from the server log until `expected` items appear or the time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = collect(server.log_text())
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


if __name__ == "__main__":
    main()
