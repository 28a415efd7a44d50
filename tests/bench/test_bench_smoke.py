"""Every benchmark still runs: each in its --quick mode, against a real server (timings not judged).

Two at a time (the machine has two cores), so they stay about a minute or two together.
"""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from telephony.testing.server_process import REPO_ROOT

pytestmark = pytest.mark.e2e

# Each benchmark and lines its quick run must print (the figures themselves vary by machine).
EXPECTED = {
    "pacing": [r"^\s+2 \| +\d+\.\d+ +\d+\.\d+/\d+\.\d+ .* \| .*\d+\.\d\d \d+\.\d+ \d+\.\d+$"],
    "capacity": [r"^ +none +2 +(GO|NO-GO) +\d/2 \|", r"^=> STT_ENGINE=none: "],
    "flood": [r"^flood call: sent \d+ frames", r"dropped \d+ \(drop-oldest", r"^  RSS each"],
    "startup": [r"^one at a time +2 \| +\d+\.\d", r"^all at once +2 \| .* \| +0 \| "],
    # Fidelity is judged even here: one FINAL per utterance, no word lost or doubled, whatever
    # the machine's speed (the recognizer's timing is drawn to vary anyway).
    "fidelity": [r"^\s+2 \| +1\.00 +0 +\d+\.\d\d +0 +0 \| .* \| +\d/2 +\| "],
    "latency": [r"^FINAL: \d of 2 utterances", r"^clear: \d of 2 barge-ins"],
    "webhook_flood": [r"^flood: 500 unsigned in .*statuses \{403: 500\}", r"^gc pauses >= 2 ms"],
    "recording": [
        r"^ +off \| +2 +0 \| .* \| +0/0 +\d+ +0 \| +\d+\.\d\d \| ",
        r"^ +on \| +2 +0 \| .* \| +0/0 +\d+ +2 \| +\d+\.\d\d \| ",
        r"^=> 2 calls: server \d+\.\d+ % of a core per call without recording",
    ],
}


def run_quick(name: str) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, f"bench/{name}.py", "--quick"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def test_every_benchmark_runs_quick_and_prints_its_figures() -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(EXPECTED, pool.map(run_quick, EXPECTED), strict=True))
    for name, (status, out) in results.items():
        assert status == 0, f"bench/{name}.py --quick failed:\n{out[-3000:]}"
        assert out.startswith(f"$ python bench/{name}.py --quick\n# nproc="), out[:300]
        assert re.search(r"load=\d+\.\d+ \d+\.\d+ \d+\.\d+", out), out[:300]
        for pattern in EXPECTED[name]:
            assert re.search(pattern, out, flags=re.MULTILINE), f"{name}: {pattern!r}\n{out}"
