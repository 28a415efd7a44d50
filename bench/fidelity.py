"""Fidelity: one FINAL per utterance and no word lost, through Google streaming, at 1-100 calls.

    python bench/fidelity.py                          # 1, 10, 50, 100 calls; 4 utterances each
    python bench/fidelity.py --levels 50 --seed 3     # another draw of the recognizer's timing
    python bench/fidelity.py --plain --repeats 3      # the polite fake, 12 utterances a call
    python bench/fidelity.py --quick                  # 2 calls x 4 utterances (the smoke test)

Per level a fresh server (STT_ENGINE=google) runs on one core and a fresh fake Google
(`bench/fake_google.py`: the real client library in the server, loopback gRPC) with the
simulated callers on the other. Each call says the fake's appointment script (`--pause` s
after each utterance), audio the fake decodes back to the same words with their times. The
fake answers on the timing simulator's schedule (seeded by `--seed`: interims from 20 ms after
onset, often repeated, finals 0.3-1.6 s after the end of speech, some after the next onset,
some without times) where the fake has it; `--plain` (or a fake without it) answers politely,
a final 500 ms of silence after the last word (`--repeats` then says the script again).
From what the server recorded (its database, as `manage.py gonogo` reads it):

- FINALs per utterance (must be 1.00), how many utterances did not get exactly one FINAL
  (`utt≠1`, must be 0: a call whose rows never arrived counts all its utterances and words
  lost), and revisions per utterance;
- words lost and doubled (0): each utterance's last word on it (its FINAL or latest revision),
  the call's words against the script's;
- FINAL latency from the end of speech (the VAD's last speech frame) p50/p95/p99, the local
  FINALs (endpointer timeout) and the engine's apart;
- TX |interval - 20 ms| p99 at the caller (median and worst of the calls' p99s);
- the server's CPU and RSS per call over the steady window, and how many calls are GO by the
  operator's rules (`gonogo`: no drops, fps 50 both ways, write_ms p99 < 1 ms, a PARTIAL and a
  FINAL);
- the callers' and the fake's CPU (they share the other core: a saturated one shows here).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from dataclasses import dataclass

import common

BYTES_PER_S = 8000  # 8 kHz mu-law
LEAD_S = 1.0  # the caller listens this long before the first word (part of its audio)
TAIL_S = 2.5  # and this long after the last (the last final comes in it)
SETTLE_S = 15.0  # wait this long after the hang-ups for the calls' last rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,10,50,100", help="concurrent calls per run")
    parser.add_argument("--repeats", type=int, default=1, help="times each call says the script")
    parser.add_argument("--seed", type=int, default=1, help="the timing simulator's draw")
    parser.add_argument("--plain", action="store_true", help="the polite fake, no simulator")
    parser.add_argument("--pause", type=float, default=1.5, help="silence after each utterance")
    common.add_server_options(parser)
    parser.add_argument("--quick", action="store_true", help="2 calls x 4 utterances: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.levels, args.repeats, args.pause = "2", 1, 1.2
    args.levels = [int(n) for n in args.levels.split(",")]
    args.timing = not args.plain and common.timing_simulator()
    if args.timing and args.repeats != 1:
        parser.error("the timing simulator's script says each word once: --repeats 1, or --plain")
    return args


def main() -> None:
    args = parse_args()
    common.start()
    from tests.fakes.google_speech import APPOINTMENT_SCRIPT, speak

    script = APPOINTMENT_SCRIPT * args.repeats
    pause_ms, lead_ms = round(args.pause * 1000), round(LEAD_S * 1000)
    audio = speak(script, pause_ms=pause_ms, lead_ms=lead_ms)
    seconds = len(audio) / BYTES_PER_S + TAIL_S
    fake = f"timing simulator, seed {args.seed}" if args.timing else "the plain fake"
    args.fake_options = (
        ["--timing-seed", str(args.seed), "--pause-ms", str(pause_ms), "--lead-ms", str(lead_ms)]
        if args.timing
        else []
    )
    common.pin_and_describe(
        args,
        f"STT_ENGINE=google, Google faked on the callers' core ({fake}); {len(script)} "
        f"utterances a call, calls of {seconds:.0f} s",
    )
    common.setup_django(common.temp_database())
    print(HEADER, flush=True)
    for n in args.levels:
        print(run_level(args, n, script, audio, seconds).row(), flush=True)


HEADER = (
    f"{'calls':>5} | {'FINAL/utt':>9} {'utt≠1':>5} {'rev/utt':>7} {'lost':>4} {'dbl':>4} | "
    f"{'FINAL ms local p50/p95/p99 (n)':>31} | {'engine p50/p95/p99 (n)':>26} | "
    f"{'TX p99 med/worst':>16} | {'%core/call':>10} {'RSS MB/call':>11} | {'GO':>7} | "
    f"{'callers+fake %core':>18} | load"
)


@dataclass
class Level:
    calls: int
    utterances: int
    finals: int
    off: int  # utterances not at exactly one FINAL
    revisions: int
    lost: int
    doubled: int
    local_ms: list[float]
    engine_ms: list[float]
    tx_p99s: list[float]
    server_share: float
    rss_per_call_mb: float
    go: int
    load: str
    callers_share: float = 0.0
    fake_share: float = 0.0
    failed: str = ""

    def row(self) -> str:
        def spread(values: list[float]) -> str:
            figures = "/".join(f"{common.pct(values, q):.0f}" for q in (50, 95, 99))
            return f"{figures} ({len(values)})"

        per = max(1, self.utterances)
        return (
            f"{self.calls:>5} | {self.finals / per:>9.2f} {self.off:>5} "
            f"{self.revisions / per:>7.2f} {self.lost:>4} {self.doubled:>4} | "
            f"{spread(self.local_ms):>31} | "
            f"{spread(self.engine_ms):>26} | "
            f"{common.median(self.tx_p99s):>7.2f}/{max(self.tx_p99s, default=0):<8.2f} | "
            f"{self.server_share * 100 / self.calls:>10.3f} {self.rss_per_call_mb:>11.3f} | "
            f"{self.go:>3}/{self.calls:<3} | "
            f"{self.callers_share * 100:>8.0f} + {self.fake_share * 100:<7.0f} | "
            f"{self.load}{self.failed}"
        )


def run_level(
    args: argparse.Namespace, n: int, script: list[list[str]], audio: bytes, seconds: float
) -> Level:
    """Fresh fake and server; `n` calls speaking `audio`; what the server recorded of them."""
    from django.conf import settings

    from calls.gonogo_run import Watcher, judge_calls
    from telephony.metrics.gonogo import DEFAULT_THRESHOLDS
    from telephony.testing.caller import dial_many, run

    loaded = common.load()
    ramp = min(2.0, 0.02 * n)
    with (
        common.fake_google(args, workers=2 * n + 16, options=args.fake_options) as fake,
        common.server_for(args, common.google_env(fake)) as server,
    ):
        pid = server.process.pid
        time.sleep(1.0)  # let start-up settle before the idle reading
        idle = common.rss_mb(pid)
        meter, callers, fake_meter = common.Meter(pid), common.Meter(), common.Meter(fake.pid)
        busy: list[float] = []

        async def calls():
            async def sample() -> None:
                # The steady window: every call is up and none has hung up yet.
                await asyncio.sleep(ramp + 1.0)
                meter.begin(), callers.begin(), fake_meter.begin()
                await asyncio.sleep(max(0.5, seconds - 3.0))
                busy.append(common.rss_mb(pid))
                meter.end(), callers.end(), fake_meter.end()

            sampler = asyncio.create_task(sample())
            reports = await dial_many(
                n,
                server.base_url,
                auth_token=settings.TWILIO_AUTH_TOKEN,
                audio=audio,
                lead_silence_s=0.0,  # the audio begins with it (the simulator's times do)
                tail_silence_s=TAIL_S,
                ramp_s=ramp,
            )
            await sampler
            return reports

        reports = run(calls())
        watcher = Watcher([r.call_sid for r in reports])
        deadline = time.monotonic() + SETTLE_S
        while watcher.load_calls() < n and time.monotonic() < deadline:
            time.sleep(0.25)
        time.sleep(0.3)  # the recorder writes a call's last rows with its end
        watcher.poll()
        watcher.load_calls()
    results = judge_calls(watcher.calls, reports, transcripts="yes", thresholds=DEFAULT_THRESHOLDS)
    words = Counter(w for utterance in script for w in utterance)
    lost = doubled = finals = revisions = off = 0
    local_ms: list[float] = []
    engine_ms: list[float] = []
    for report in reports:
        figures = watcher.calls.get(report.call_sid)
        if figures is None:  # no rows arrived: nothing it said reached the transcript
            lost += sum(words.values())
            off += len(script)
            continue
        last: dict[int, str] = {}  # utterance -> its last word on the line
        per_utterance: Counter[int] = Counter()  # utterance -> its FINALs
        for event in figures.said:
            if event.kind == "final":
                finals += 1
                per_utterance[event.utterance] += 1
                if event.latency_ms is not None:  # none recorded: not a latency of 0
                    (local_ms if event.local else engine_ms).append(event.latency_ms)
            elif event.kind == "revision":
                revisions += 1
            if event.kind != "partial":
                last[event.utterance] = event.text
        # Utterances not at exactly one FINAL: extra FINALs on one, and spoken ones the
        # line did not finalize (or finalized as more than were spoken). A total of 1.00
        # FINAL per utterance can hide two on one and none on another; this cannot.
        off += sum(count - 1 for count in per_utterance.values() if count > 1)
        off += abs(len(per_utterance) - len(script))
        said = Counter(w for u in sorted(last) for w in last[u].split())
        lost += sum((words - said).values())
        doubled += sum((said - words).values())
    failed = [r for r in reports if not r.ok]
    return Level(
        calls=n,
        utterances=n * len(script),
        finals=finals,
        off=off,
        revisions=revisions,
        lost=lost,
        doubled=doubled,
        local_ms=local_ms,
        engine_ms=engine_ms,
        tx_p99s=[r.jitter_p99_ms for r in reports],
        server_share=meter.share,
        rss_per_call_mb=(busy[0] - idle) / n if busy else 0.0,
        go=sum(r.go for r in results),
        load=loaded,
        callers_share=callers.share,
        fake_share=fake_meter.share,
        failed=f"  {len(failed)} FAILED: {failed[0].error}" if failed else "",
    )


if __name__ == "__main__":
    main()
