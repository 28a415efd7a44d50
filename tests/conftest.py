"""Fixtures shared by every test package."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from telephony.testing.server_process import ServerProcess, run_server


@pytest.fixture
def server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., ServerProcess]]:
    """Start real daphne servers (`server_factory(env={...})`); all are stopped afterwards."""
    with contextlib.ExitStack() as stack:

        def start(env: dict[str, str] | None = None, **kwargs: Any) -> ServerProcess:
            kwargs.setdefault("workdir", tmp_path_factory.mktemp("server"))
            return stack.enter_context(run_server(env, **kwargs))

        yield start


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that starts a server as e2e, so `-m "not e2e"` skips them."""
    for item in items:
        if "server_factory" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)
