"""The calls database tests again, on PostgreSQL, from a suite that runs on SQLite.

pytest-django builds one test database per session from DATABASE_URL, so the second database
gets a session of its own: a child pytest with DATABASE_URL pointing at PostgreSQL. When the
suite already runs on PostgreSQL (`DATABASE_URL=postgres://... pytest tests/calls`), this test
has nothing to add and is skipped.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from django.db import connection

from telephony.testing.server_process import REPO_ROOT

pytestmark = pytest.mark.postgres

PG_HOST, PG_PORT = "127.0.0.1", 5432
# The database tests of this package (not the browser one: it runs its own server on SQLite).
DB_TESTS = [
    "test_models.py",
    "test_services.py",
    "test_selectors.py",
    "test_batch.py",
    "test_recorder.py",
    "test_admin.py",
    "test_live.py",
    "test_gonogo_run.py",
    "commands/test_calls_mark_interrupted.py",
    "test_ended_calls.py",
    "test_admin_search.py",
]


def postgres_answers() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=0.5):
            return True
    except OSError:
        return False


def test_the_database_tests_pass_on_postgresql() -> None:
    if connection.vendor == "postgresql":
        pytest.skip("this session already runs on PostgreSQL")
    if not postgres_answers():
        if os.environ.get("CI"):
            pytest.fail(f"CI has no PostgreSQL at {PG_HOST}:{PG_PORT}")
        pytest.skip(f"no PostgreSQL at {PG_HOST}:{PG_PORT}")
    # A name of its own (pytest-django adds test_): concurrent runs do not drop each other's.
    url = f"postgres://postgres@{PG_HOST}:{PG_PORT}/calls_{os.getpid()}"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--create-db",
         *(f"tests/calls/{name}" for name in DB_TESTS)],
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    print(f"\nPostgreSQL: {summary}")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in summary
    assert "failed" not in summary
    assert "skipped" not in summary
