"""The server process helper: the command lines it serves with, and a server that cannot start."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from telephony.testing.server_process import (
    UVICORN_ARGS,
    WS_MAX_SIZE_BYTES,
    ServerError,
    free_port,
    port_answers,
    server_command,
)


def test_daphne_and_uvicorn_serve_the_same_app_with_the_same_message_bound() -> None:
    daphne = server_command("daphne", 8123)
    assert daphne[:2] == ["-m", "daphne"]
    assert daphne[-1] == "project.asgi:application"
    assert daphne[daphne.index("-p") : daphne.index("-p") + 2] == ["-p", "8123"]
    assert str(WS_MAX_SIZE_BYTES) in daphne

    uvicorn = server_command("uvicorn", 8123)
    assert uvicorn[:3] == ["-m", "uvicorn", "project.asgi:asgi_app"]
    assert uvicorn[-len(UVICORN_ARGS) :] == list(UVICORN_ARGS)
    assert uvicorn[uvicorn.index("--port") : uvicorn.index("--port") + 2] == ["--port", "8123"]
    assert str(WS_MAX_SIZE_BYTES) in uvicorn

    with pytest.raises(ValueError, match="unknown server 'gunicorn'"):
        server_command("gunicorn", 8123)


def test_port_answers_only_while_something_listens() -> None:
    port = free_port()
    assert not port_answers(port)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert port_answers(port)


def test_a_server_that_cannot_start_reports_its_log(server_factory: Callable[..., Any]) -> None:
    with pytest.raises(ServerError, match="no_such_module"):
        server_factory(app="tests.no_such_module:application", migrate=False, start_timeout_s=20)
