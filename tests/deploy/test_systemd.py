"""The systemd unit serves each process as bin/run does: the same uvicorn arguments, one worker."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

from telephony.testing.server_process import REPO_ROOT, UVICORN_ARGS

UNIT = REPO_ROOT / "deploy" / "systemd" / "line@.service"
CHECKOUT = "/srv/line"  # where the unit expects the checkout


def service_settings() -> dict[str, str]:
    """The [Service] section of the unit: each setting's value."""
    values: dict[str, str] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def test_each_instance_serves_the_arguments_the_tests_and_benchmarks_use() -> None:
    words = shlex.split(service_settings()["ExecStart"])
    assert words[:2] == [f"{CHECKOUT}/.venv/bin/uvicorn", "project.asgi:asgi_app"]
    # Loopback only (nginx is the way in), and the instance name is the port.
    assert words[2:6] == ["--host", "127.0.0.1", "--port", "%i"]
    assert words[6:] == list(UVICORN_ARGS)


def test_the_stop_timeout_leaves_sigterm_the_time_to_finish_the_calls() -> None:
    service = service_settings()
    assert service["KillSignal"] == "SIGTERM"
    assert service.get("KillMode", "control-group") in ("control-group", "mixed")
    # The calls get SHUTDOWN_DRAIN_S, then uvicorn closes and the records are flushed.
    assert float(service["TimeoutStopSec"]) >= 2 * settings.SHUTDOWN_DRAIN_S + 10
    assert service["WorkingDirectory"] == CHECKOUT


def test_systemd_reads_the_unit_without_a_complaint(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # An instance of it, pointed at this checkout (whose .venv/bin/uvicorn exists).
    unit = tmp_path / "line@8001.service"
    unit.write_text(UNIT.read_text().replace(CHECKOUT, str(REPO_ROOT)))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
