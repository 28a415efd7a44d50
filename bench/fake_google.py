"""The fake Google Speech server in a process of its own, for benchmarks of STT_ENGINE=google.

    python bench/fake_google.py --workers 400        # prints "host 127.0.0.1:<port>", serves
    python bench/fake_google.py --timing-seed 7 --pause-ms 1500 --lead-ms 1000   # simulator

`common.fake_google` starts it pinned to the callers' core, as Google would be elsewhere: the
line server's core then pays only for our side of the gRPC streams (the real client library),
not for the recognizer. The fake is `tests.fakes.google_speech.FakeSpeechServer`; each open
stream holds a worker of its pool, so the pool is sized for the calls. With `--timing-seed`
it answers as the timing simulator draws (`TimingPlan`: early and repeated interims, late
finals, finals without times), for callers that say the appointment script laid out with the
same `--pause-ms` and `--lead-ms` (as `bench/fidelity.py` does).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

import common  # noqa: F401  (puts the repository on sys.path)

from tests.fakes.google_speech import FakeSpeechServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=256, help="concurrent streams served")
    parser.add_argument("--endpoint-ms", type=int, default=500, help="silence before a final")
    parser.add_argument("--timing-seed", type=int, default=None, help="answer as drawn from it")
    parser.add_argument("--pause-ms", type=int, default=1500, help="the script's pauses")
    parser.add_argument("--lead-ms", type=int, default=1000, help="silence before its first word")
    args = parser.parse_args()
    if args.timing_seed is None:
        fake = FakeSpeechServer(endpoint_ms=args.endpoint_ms)
    else:
        from tests.fakes.google_speech import APPOINTMENT_SCRIPT, TimingPlan, spoken

        script = spoken(APPOINTMENT_SCRIPT, pause_ms=args.pause_ms, lead_ms=args.lead_ms)
        plan = TimingPlan.draw(script, args.timing_seed)
        fake = FakeSpeechServer(endpoint_ms=args.endpoint_ms, timing=plan)
    fake.max_workers = args.workers
    fake.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"host {fake.host}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    fake.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
