"""The thread under the RX and TX workers: named for the OS, and a bug ends it loudly."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from telephony.media.worker import WorkerThread


def test_the_loop_runs_in_a_daemon_thread_named_for_the_os() -> None:
    seen: list[tuple[str, bool]] = []

    def loop() -> None:
        comm = Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()
        seen.append((comm, threading.current_thread().daemon))

    worker = WorkerThread("tx-CA0123456789abcdef", loop)
    worker.start()
    assert worker.join(2.0)
    assert seen == [("tx-CA0123456789", True)]
    assert worker.error is None


def test_a_failing_loop_is_logged_with_its_traceback_and_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def loop() -> None:
        raise RuntimeError("a bug in the loop")

    worker = WorkerThread("rx-CAbroken", loop)
    with caplog.at_level(logging.ERROR, logger="telephony.media.worker"):
        worker.start()
        assert worker.join(2.0)
    assert isinstance(worker.error, RuntimeError)
    (record,) = caplog.records
    assert "rx-CAbroken failed" in record.getMessage()
    assert record.exc_info is not None
    assert not worker.is_alive()
