"""Run the real server (daphne or uvicorn) in a child process on loopback, for tests and benches.

`manage.py gonogo --spawn`, the benchmarks under `bench/` and the end-to-end tests start the
same server the same way: a migrated database, `PUBLIC_BASE_URL` matching the port (Twilio's
signatures are checked against it), its own process group, its output in one log file.
`cpus` pins it with `taskset` so a benchmark can keep it apart from the simulated callers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_APP = "project.asgi:application"


class ServerError(RuntimeError):
    """The server process could not be started or died."""


@dataclass
class ServerProcess:
    """A running server: where to reach it and what it logged."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    env: dict[str, str]

    @property
    def base_url(self) -> str:
        """Return the http:// origin the server answers on (also its PUBLIC_BASE_URL)."""
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        """Return everything the server has written to stdout and stderr so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None


def free_port() -> int:
    """Return a loopback TCP port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_answers(port: int) -> bool:
    """Whether something accepts TCP connections on the loopback port."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


@contextlib.contextmanager
def run_server(
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    *,
    app: str = DEFAULT_APP,
    migrate: bool = True,
    start_timeout_s: float = 30.0,
    workdir: Path | None = None,
    fresh_database: bool = True,
    cpus: str | None = None,
    server: str = "daphne",
) -> Iterator[ServerProcess]:
    """Start a server with `env` overrides, wait until it listens, and stop it afterwards.

    Without a DATABASE_URL in `env`, the server gets a fresh SQLite file, migrated first, unless
    `fresh_database` is False: then it uses this process's database (the environment's
    DATABASE_URL or the settings' default). `cpus` is a `taskset -c` list, e.g. "0".
    `server` is "daphne" (the tests' default: channels' own server) or "uvicorn" (what
    `bin/run` serves: one worker, `UVICORN_ARGS`).
    """
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="e2e-server-")))
        port = port or free_port()
        child_env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "PYTHONUNBUFFERED": "1",  # so log_text() shows lines as they happen
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            **({"DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}"} if fresh_database else {}),
            **(env or {}),
        }
        log_path = workdir / "server.log"
        if migrate:
            _migrate(child_env, log_path)
        log_file = stack.enter_context(log_path.open("ab"))
        pin = ["taskset", "-c", cpus] if cpus else []  # taskset execs: the pid stays the server's
        process = subprocess.Popen(
            [*pin, sys.executable, *server_command(server, port, app)],
            cwd=REPO_ROOT,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: signals reach it and its children only
        )
        running = ServerProcess(process=process, port=port, log_path=log_path, env=child_env)
        stack.callback(stop_server, process)
        wait_until_listening(running, start_timeout_s)
        yield running


# The single-worker uvicorn command line `bin/run` serves the product with (tests/bin/test_run.py
# keeps the two equal), so tests and benchmarks measure what runs in production. Two choices in
# it: `websockets-sansio` is the same `websockets` library through its current sans-I/O protocol
# (uvicorn's `websockets` option drives the library's legacy implementation, deprecated upstream,
# which spends a task and an asyncio.wait per message: 95 calls on one core were 20/95 and 39/95
# GO with it, 95/95 with sans-I/O; bench/HISTORY.md), and a 1 MiB bound on a WebSocket message
# (uvicorn's default is 16 MiB; daphne is given the same bound).
WS_MAX_SIZE_BYTES = 1024 * 1024
UVICORN_ARGS = ("--ws", "websockets-sansio", "--ws-max-size", str(WS_MAX_SIZE_BYTES),
                "--workers", "1", "--timeout-keep-alive", "75", "--http", "h11",
                "--lifespan", "on")  # fmt: skip


def server_command(server: str, port: int, app: str = DEFAULT_APP) -> list[str]:
    """The arguments after `python` that serve `app` on loopback `port` with `server`."""
    if server == "daphne":
        return ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                "--websocket-max-message-size", str(WS_MAX_SIZE_BYTES), app]  # fmt: skip
    if server == "uvicorn":
        app = app.replace(":application", ":asgi_app")  # the same application
        return ["-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), *UVICORN_ARGS]
    raise ValueError(f"unknown server {server!r}: daphne or uvicorn")


def stop_server(process: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """Stop the server: SIGTERM to its process group, then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace_s)


def _migrate(env: dict[str, str], log_path: Path) -> None:
    """Create the server's database tables before it starts."""
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    log_path.write_text(result.stdout + result.stderr, encoding="utf-8")
    if result.returncode != 0:
        raise ServerError(f"migrate failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def wait_until_listening(server: ServerProcess, timeout_s: float) -> None:
    """Poll the port until it answers; fail with the server's log if it dies or never listens."""
    deadline = time.monotonic() + timeout_s
    while not port_answers(server.port):
        if not server.alive():
            raise ServerError(
                f"server exited with {server.process.returncode} before listening:\n"
                f"{server.log_text()}"
            )
        if time.monotonic() > deadline:
            raise ServerError(
                f"server did not listen on port {server.port} within {timeout_s:.0f} s:\n"
                f"{server.log_text()}"
            )
        time.sleep(0.05)
