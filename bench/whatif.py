"""What-if: the pacing figures with candidate hot-path fixes, against the app as it ships.

    python bench/whatif.py                               # 50 calls x 20 s, each set-up twice
    python bench/whatif.py --calls 20 --seconds 30 --rounds 3
    python bench/whatif.py --configs shipped,uvicorn+all

Each set-up is a fresh server (STT_ENGINE=none, one core) running `bench/whatif_asgi.py`, the
app with fixes applied as patches (see that module), dialled like bench/pacing.py. Set-ups run
in turn, round after round, so that a change in the machine's load hits them all alike; the
summary is the median over rounds.
"""

from __future__ import annotations

import argparse
import statistics

import common
import pacing

CONFIGS = {
    "shipped": ("daphne", {}),
    "dispatch": ("daphne", {"WHATIF_DISPATCH": "1"}),
    "uvicorn": ("uvicorn", {}),
    "uvicorn+dispatch": ("uvicorn", {"WHATIF_DISPATCH": "1"}),
    "uvicorn+dispatch+rxtick": ("uvicorn", {"WHATIF_DISPATCH": "1", "WHATIF_RX_TICK": "1"}),
    "uvicorn+all": (
        "uvicorn",
        {"WHATIF_DISPATCH": "1", "WHATIF_RX_TICK": "1", "WHATIF_SWITCH_MS": "1"},
    ),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    args.server = "per set-up"
    args.configs = args.configs.split(",")
    return args


def main() -> None:
    args = parse_args()
    common.start()
    common.pin_and_describe(args, f"STT_ENGINE=none; {args.calls} calls of {args.seconds:g} s")
    common.setup_django(common.temp_database())
    from django.conf import settings

    from calls.gonogo_run import UTTERANCES, speech_plan
    from telephony.testing.caller import run, speech_audio

    audio, tail, _ = speech_plan(
        [speech_audio(t) for t in UTTERANCES], duration_s=args.seconds, lead_s=0.5, pause_s=1.0
    )
    results: dict[str, list[pacing.Level]] = {name: [] for name in args.configs}
    print(f"{'set-up':<24} {pacing.HEADER}")
    for _ in range(args.rounds):
        for name in args.configs:
            kind, env = CONFIGS[name]
            env = {"STT_ENGINE": "none", "RX_CADENCE_STATS": "1", "PYTHONPATH": "bench", **env}
            with common.server(
                env, pin=not args.no_pin, kind=kind, app="whatif_asgi:application"
            ) as server:
                figures = run(
                    pacing.level(
                        server,
                        args.calls,
                        args.seconds,
                        audio=audio,
                        tail_s=tail,
                        token=settings.TWILIO_AUTH_TOKEN,
                    )
                )
            results[name].append(figures)
            print(f"{name:<24} {figures.row()}", flush=True)
    print(f"\nmedian over {args.rounds} round(s), {args.calls} calls:")
    print(f"{'set-up':<24} {'server %core/call':>17} {'TX p99 worst ms':>15} {'RX fps':>7}")
    for name, levels in results.items():
        print(
            f"{name:<24} {statistics.median(lv.server_pct_per_call for lv in levels):>17.2f} "
            f"{statistics.median(lv.tx_p99_worst for lv in levels):>15.2f} "
            f"{statistics.median(lv.rx_fps for lv in levels):>7.1f}"
        )


if __name__ == "__main__":
    main()
