"""The thread under each of a call's 20 ms workers (RX and TX).

One wrapper for both: the thread is a daemon (a stuck engine must not keep the process alive),
carries the call's name at the OS level too (`top -H` shows `rx-CA…`/`tx-CA…`), and a bug in
the loop ends the worker loudly (logged with its traceback, kept in `error`), never silently.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from telephony.process.osthread import name_this_thread

log = logging.getLogger(__name__)


class WorkerThread:
    """Run `loop` once in a named daemon thread; `loop` returns when the worker is done."""

    def __init__(self, name: str, loop: Callable[[], None]) -> None:
        self.name = name
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the loop to end; True if it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        """Return whether the loop is still running."""
        return self._thread.is_alive()

    def _run(self) -> None:
        name_this_thread(self.name)
        try:
            self._loop()
        except BaseException as exc:  # a bug here must end the call loudly, not silently
            self.error = exc
            log.exception("worker %s failed", self.name)
