"""Hand work from the calls' TX threads to the event loop, one loop wake-up for a batch.

`loop.call_soon_threadsafe` wakes the loop (a self-pipe write and an epoll return) for every
call. With 100 calls that is 5,000 wake-ups a second for TX frames alone. Here the first
hand-off schedules one drain and those that follow before the loop runs it just join the batch,
so when the loop is busy (when wake-ups cost the most) it takes every waiting frame in one go;
when it is idle each frame still goes at once. Order is kept: one FIFO for all callers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopHandoff] = (
    weakref.WeakKeyDictionary()
)
_by_loop_lock = threading.Lock()


class LoopHandoff:
    """A thread-safe FIFO of callbacks that one event loop drains per wake-up."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._scheduled = False
        self.wakeups = 0  # drains the loop has run: with `handed`, how well batching works
        self.handed = 0

    def call(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run `callback(*args)` on the loop soon; callable from any thread.

        Raises RuntimeError if the loop is closed, as `call_soon_threadsafe` does.
        """
        with self._lock:
            self._pending.append((callback, args))
            self.handed += 1
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:
            with self._lock:
                self._scheduled = False
                self._pending.clear()
            raise

    def _drain(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, deque()
            self._scheduled = False
        self.wakeups += 1
        for callback, args in batch:
            try:
                callback(*args)
            except Exception:
                # One call's failing callback must not cost the others their frames.
                log.exception("handed-off callback %r failed", callback)


def handoff_for(loop: asyncio.AbstractEventLoop) -> LoopHandoff:
    """The loop's one hand-off (created on first use), shared by every call on it."""
    with _by_loop_lock:
        handoff = _by_loop.get(loop)
        if handoff is None:
            handoff = _by_loop[loop] = LoopHandoff(loop)
        return handoff
