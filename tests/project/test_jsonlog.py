"""Log lines: plain by default, exactly as operators grep them; LOG_FORMAT=json for log shippers."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from project.jsonlog import JsonFormatter
from telephony.metrics.meters import SecondSample

REPO = Path(__file__).resolve().parents[2]

# One second of a real session (tests/telephony/test_session.py's, driven by a fake clock), and
# a FINAL published through it, logged by whatever LOGGING the settings build.
ONE_SECOND = """
import django
django.setup()
from telephony.turns.transcript import TranscriptEvent
from tests.helpers.clock import FakeClock
from tests.helpers.session import make_session
clock = FakeClock(50.0)
session, _, _ = make_session(clock)
clock.now += 1.0
session._rx_tick()
session._on_transcript(TranscriptEvent(
    call_sid="CA1", kind="final", text="שלום, order 4567", utterance=1, offset_ms=900,
    at=clock.now, latency_ms=480.0, local=True))
"""


def run_session(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", ONE_SECOND],
        cwd=REPO,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_plain_lines_are_the_default_and_keep_their_shape() -> None:
    done = run_session()
    assert done.returncode == 0, done.stderr
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO telephony\.session "
    lines = done.stderr.splitlines()
    assert any(re.fullmatch(stamp + r"\[RX\] call=CA1 fps_in=0 q=0 drops=0 write_ms=0\.00", x)
               for x in lines), done.stderr  # fmt: skip
    assert any(re.fullmatch(stamp + r"\[TX\] call=CA1 fps=0 q=0 drops=0", x) for x in lines)
    assert any(
        re.fullmatch(stamp + r"✅ \[FINAL\] call=CA1 שלום, order 4567 \(latency_ms=480, local\)", x)
        for x in lines
    ), done.stderr


def test_json_lines_are_one_object_each_with_the_figures_as_fields() -> None:
    done = run_session(LOG_FORMAT="json")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines()]  # every line is JSON
    by_line = {r.get("line"): r for r in records if r["logger"] == "telephony.session"}
    rx, tx, final = by_line["RX"], by_line["TX"], by_line["FINAL"]
    assert rx["message"] == "[RX] call=CA1 fps_in=0 q=0 drops=0 write_ms=0.00"  # the plain text
    assert rx["level"] == "INFO"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", rx["time"])
    assert {k: rx[k] for k in ("call", "fps_in", "q", "drops", "write_ms")} == {
        "call": "CA1", "fps_in": 0, "q": 0, "drops": 0, "write_ms": 0.0,
    }  # fmt: skip
    assert {k: tx[k] for k in ("call", "fps", "q", "drops", "send_q")} == {
        "call": "CA1", "fps": 0, "q": 0, "drops": 0, "send_q": 0,
    }  # fmt: skip
    assert (final["text"], final["latency_ms"], final["local"]) == ("שלום, order 4567", 480.0, True)


def test_an_unknown_log_format_is_refused_at_start() -> None:
    done = run_session(LOG_FORMAT="xml")
    assert done.returncode != 0
    assert "LOG_FORMAT must be plain or json, not 'xml'" in done.stderr


def record(msg: str, *args: object, exc_info=None, **extra: object) -> logging.LogRecord:
    r = logging.LogRecord("telephony.session", logging.WARNING, __file__, 1, msg, args, exc_info)
    for key, value in extra.items():
        setattr(r, key, value)
    return r


def test_a_record_with_an_exception_or_a_newline_stays_one_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        exc_info = sys.exc_info()
    text = JsonFormatter().format(record("call=%s failed\nnext", "CA1", exc_info=exc_info))
    assert "\n" not in text
    out = json.loads(text)
    assert out["message"] == "call=CA1 failed\nnext"
    assert out["level"] == "WARNING"
    assert "RuntimeError: boom" in out["exc_info"]


def test_the_figures_of_a_second_are_fields_named_as_in_the_line() -> None:
    sample = SecondSample(
        call_sid="CA9", second=3, at=0.0, fps_in=49, rx_q=3, rx_drops=1, rx_drops_total=4,
        write_ms=0.214, tx_fps=50, tx_q=2, tx_drops=0, tx_drops_total=0, send_q=1,
    )  # fmt: skip
    out = json.loads(JsonFormatter().format(record(sample.rx_line(), **sample.rx_fields())))
    assert out["message"] == "[RX] call=CA9 fps_in=49 q=3 drops=1 write_ms=0.21"
    assert (out["fps_in"], out["q"], out["drops"], out["write_ms"]) == (49, 3, 1, 0.21)
