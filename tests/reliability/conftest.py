"""Fixtures for the reliability tests: PostgreSQL databases and Redis prefixes of their own.

Like tests/calls/test_postgres.py, the tests that start servers on PostgreSQL and Redis run in
the suite's first (SQLite) session, against the local servers, and are skipped in bin/test's
second session (which already runs on PostgreSQL): running them twice would show nothing new.
Without the servers they are skipped, except on CI, where that is a failure.

Tests marked `load` (minutes long) run only when asked: `pytest -m load tests/reliability`.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator

import pytest
from django.db import connection

PG_HOST, PG_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def pytest_configure(config: pytest.Config) -> None:
    """Register the `load` marker."""
    config.addinivalue_line("markers", "load: minutes long; runs only with -m load")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `load` tests unless the marker expression asks for them."""
    if "load" in (config.getoption("markexpr", "") or ""):
        return
    skip = pytest.mark.skip(reason="a load test: run it with -m load")
    for item in items:
        if item.get_closest_marker("load") is not None:
            item.add_marker(skip)


def answers(host: str, port: int) -> bool:
    """Whether something accepts TCP connections there."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def need(host: str, port: int, what: str) -> None:
    """Skip (fail on CI) when a server the test needs is not running."""
    if answers(host, port):
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI has no {what} at {host}:{port}")
    pytest.skip(f"no {what} at {host}:{port}")


def once_per_run() -> None:
    """Skip in bin/test's PostgreSQL session: these tests already ran in the SQLite one."""
    if connection.vendor == "postgresql":
        pytest.skip("ran in the SQLite session; its servers use PostgreSQL and Redis anyway")


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for the servers of one test (dropped afterwards)."""
    once_per_run()
    need(PG_HOST, PG_PORT, "PostgreSQL")
    import psycopg

    name = f"reliability_{os.getpid()}_{secrets.token_hex(3)}"
    admin = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_env() -> dict[str, str]:
    """REDIS_URL and a CHANNELS_PREFIX of this test's own (runs sharing Redis stay apart)."""
    need(REDIS_HOST, REDIS_PORT, "Redis")
    return {
        "REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
        "CHANNELS_PREFIX": f"test{os.getpid()}{secrets.token_hex(3)}",
    }
