"""Reading a real server's log in end-to-end tests, and the loudness of audio heard."""

from __future__ import annotations

import re
import time

from telephony.media.audio import ulaw_to_pcm16

LINE = re.compile(r"\[(RX|TX)\] call=(\w+) (.*)")


def figures(log: str, call_sid: str, kind: str) -> list[dict[str, float]]:
    rows = []
    for match in LINE.finditer(log):
        if match.group(1) == kind and match.group(2) == call_sid:
            rows.append({k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", match.group(3))})
    return rows


def wait_for(server, text: str, timeout_s: float = 5.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        log = server.log_text()
        if text in log:
            return log
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the server log:\n{server.log_text()[-3000:]}")


def rms(ulaw: bytes) -> float:
    pcm = ulaw_to_pcm16(ulaw)
    samples = memoryview(pcm).cast("h")
    return (sum(s * s for s in samples) / max(1, len(samples))) ** 0.5
