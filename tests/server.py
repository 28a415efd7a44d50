"""The real server (daphne) in a child process on loopback: moved to `telephony.server_process`.

Kept under this name for the tests that import it; `manage.py gonogo --spawn` and the
benchmarks use the same code, and product code must not import from tests/.
"""

from telephony.server_process import (
    DEFAULT_APP,
    REPO_ROOT,
    ServerError,
    ServerProcess,
    free_port,
    port_answers,
    run_server,
    stop_server,
)

__all__ = [
    "DEFAULT_APP",
    "REPO_ROOT",
    "ServerError",
    "ServerProcess",
    "free_port",
    "port_answers",
    "run_server",
    "stop_server",
]
