"""The fake Google Speech server in a process of its own, for benchmarks of STT_ENGINE=google.

    python bench/fake_google.py --workers 400        # prints "host 127.0.0.1:<port>", serves

`common.fake_google` starts it pinned to the callers' core, as Google would be elsewhere: the
line server's core then pays only for our side of the gRPC streams (the real client library),
not for the recognizer. The fake is `tests.fakes.google_speech.FakeSpeechServer`; each open
stream holds a worker of its pool, so the pool is sized for the calls.
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
    args = parser.parse_args()
    fake = FakeSpeechServer(endpoint_ms=args.endpoint_ms)
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
