"""`manage.py gonogo` against real servers: GO when healthy, NO-GO with the fault's own reason."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from telephony.testing.server_process import REPO_ROOT


def gonogo(*args: str, database_url: str, env: dict[str, str] | None = None):
    """Run the command as an operator would; return (exit status, everything it printed)."""
    result = subprocess.run(
        [sys.executable, "manage.py", "gonogo", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": database_url, **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def reasons(output: str) -> list[str]:
    """The `- reason: hint` lines of a NO-GO."""
    return re.findall(r"^  - (.*)$", output, flags=re.MULTILINE)


def test_a_healthy_server_is_go(server_factory) -> None:
    server = server_factory()  # the defaults: embedded whisper, espeak greeting
    status, out = gonogo(
        "--url",
        server.base_url,
        "--duration",
        "10",
        # The test machine is shared and whisper decodes on the audio threads' cores: a write
        # can wait a few ms for a CPU (BENCHMARKS.md, capacity). The 1 ms line is the
        # benchmarks' business; here a healthy server must pass every rule as the command runs.
        "--write-ms-p99",
        "5",
        database_url=server.env["DATABASE_URL"],
    )
    assert status == 0, out
    assert "GO: 1/1 call(s) GO" in out
    assert "NO-GO" not in out
    # The per-second table came as it went, with the transcript in it.
    assert len(re.findall(r"^\s+\d+\s+CA\w{7}\s+\d+ ", out, flags=re.MULTILINE)) >= 8, out
    assert "🟡 [PARTIAL]" in out
    assert "✅ [FINAL]" in out
    # The lines that show the verdict, as an operator reading the logs would pick them.
    shown = out.split(": GO\n", 1)[1]
    assert 10 <= len(re.findall(r"^    \d\d:\d\d:\d\d ", shown, flags=re.MULTILINE)) <= 15


def test_a_slow_stt_write_is_no_go_for_write_ms(server_factory, tmp_path) -> None:
    # --spawn: the command starts its own server on its database, with this environment.
    status, out = gonogo(
        "--spawn",
        "--duration",
        "8",
        database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        env={"STT_ENGINE": "slow", "STT_SLOW_WRITE_MS": "5", "STT_SLOW_INNER": "whisper"},
    )
    assert status == 1, out
    assert "NO-GO: 0/1 call(s) GO" in out
    found = reasons(out)
    assert len(found) == 1, out
    slowest = re.fullmatch(r"write_ms p99=([\d.]+) \(>= 1\): the STT write blocks.*", found[0])
    assert slowest, out
    assert float(slowest.group(1)) >= 5.0  # the injected 5 ms (and GIL waits on top)
    assert re.search(r"\[RX\] call=CA\w+ fps_in=\d+ q=\d+ drops=0 write_ms=\d+\.\d\d", out)


def test_forty_frames_a_second_is_no_go_for_fps_in(server_factory) -> None:
    server = server_factory(env={"STT_ENGINE": "none"})
    status, out = gonogo(
        "--url",
        server.base_url,
        "--duration",
        "8",
        "--speed",
        "0.8",
        database_url=server.env["DATABASE_URL"],
    )
    assert status == 1, out
    found = reasons(out)
    # The sink engine recognizes nothing: no PARTIAL/FINAL is asked of it, so fps_in is all.
    assert len(found) == 1, out
    assert re.fullmatch(r"fps_in off 50±5 in \d+/\d+ s: heavy work per frame.*", found[0]), out
    assert re.search(r"\[RX\] call=CA\w+ fps_in=4[01] ", out), out
