"""The README's first command, `bin/run`, serves a call (and with the arguments the tests use)."""

from __future__ import annotations

import shlex
import signal
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

from telephony.testing.caller import dial, run, speech_audio
from telephony.testing.server_process import (
    REPO_ROOT,
    UVICORN_ARGS,
    ServerProcess,
    free_port,
    stop_server,
    wait_until_listening,
)

BIN_RUN = REPO_ROOT / "bin" / "run"


def served_arguments() -> list[str]:
    """The uvicorn arguments in bin/run after the host and port."""
    text = BIN_RUN.read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if "uvicorn project.asgi:asgi_app" in line)
    words = shlex.split(line)
    return words[words.index("--port") + 2 :]


def test_bin_run_serves_with_the_arguments_the_tests_and_benchmarks_use() -> None:
    assert served_arguments() == list(UVICORN_ARGS)


@pytest.mark.e2e
def test_bin_run_answers_a_call_on_the_embedded_defaults(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PORT": str(port),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "STATIC_ROOT": str(tmp_path / "static"),
        "PYTHONUNBUFFERED": "1",
    }  # nothing else: the embedded defaults (whisper, espeak, in-memory layer)
    log_path = tmp_path / "run.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(BIN_RUN)], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    server = ServerProcess(process=process, port=port, log_path=log_path, env=env)
    try:
        wait_until_listening(server, 120.0)
        report = run(
            dial(
                server.base_url,
                auth_token=settings.TWILIO_AUTH_TOKEN,
                audio=speech_audio("I would like to check my order"),
                lead_silence_s=0.5,
                tail_silence_s=2.0,
            )
        )
        assert report.ok, report.summary()
        assert report.frames_received > 50  # the greeting, then silence, came back
        text = server.log_text()
        assert f"[RX] call={report.call_sid} fps_in=" in text, text[-3000:]
        assert "Uvicorn running on" in text
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal so its parent sees why.
        assert process.wait(timeout=15) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.log_text()
    finally:
        stop_server(process)
