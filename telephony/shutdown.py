"""Graceful shutdown: finish the calls in progress (finals flushed, rows closed) before exiting.

Every running `CallSession` is registered here by its consumer. On shutdown `drain` stops them
all in parallel (each drains RX in order, closes STT for its last final, stops TX), then waits
for the line observer to store what they reported. Where the servers let us in:

- daphne stops on SIGTERM through Twisted's reactor, whose "before shutdown" triggers run in
  order: ours is added at warm-up, before daphne adds the one that cancels every application
  instance, so the calls are finished before their consumers are killed.
- uvicorn closes each WebSocket with 1012 on SIGTERM (each consumer then finishes its own call)
  and waits for them, then sends the ASGI lifespan shutdown: `Lifespan` drains what is left.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings

from telephony.observer import get_line_observer

if TYPE_CHECKING:
    from telephony.session import CallSession

log = logging.getLogger(__name__)

SHUTDOWN_REASON = "server shutdown"

_lock = threading.Lock()
# Weak: a session whose consumer died without stopping it still has running threads holding it.
_live: weakref.WeakKeyDictionary[CallSession, threading.Event] = weakref.WeakKeyDictionary()
_installed = False


def register(session: CallSession) -> None:
    """Note a started call, so a shutdown finishes it."""
    with _lock:
        _live[session] = threading.Event()


def finished(session: CallSession) -> None:
    """Note that a call's `stop` has returned (its records are queued)."""
    with _lock:
        done = _live.pop(session, None)
    if done is not None:
        done.set()


def live() -> list[CallSession]:
    """The calls registered and not finished yet."""
    with _lock:
        return list(_live)


@dataclass(frozen=True, slots=True)
class DrainReport:
    calls: int  # calls in progress when the drain began
    finished: int  # of those, stopped within the time allowed
    flushed: bool  # the line observer stored everything reported
    elapsed_s: float


def drain(
    *,
    reason: str = SHUTDOWN_REASON,
    timeout_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> DrainReport:
    """Stop every call in progress and flush their reports, within `timeout_s` (blocks)."""
    timeout_s = settings.SHUTDOWN_DRAIN_S if timeout_s is None else timeout_s
    t0 = clock()
    deadline = t0 + timeout_s
    with _lock:
        pending = list(_live.items())
    for session, _done in pending:
        # One thread per call: each stop blocks up to ~1 s, and they must overlap.
        threading.Thread(
            target=_stop, args=(session, reason), name=f"drain[{session.call_sid}]", daemon=True
        ).start()
    done = 0
    for _session, event in pending:
        if event.wait(max(0.0, deadline - clock())):
            done += 1
    flushed = get_line_observer().flush(timeout=max(0.1, deadline - clock()))
    report = DrainReport(calls=len(pending), finished=done, flushed=flushed, elapsed_s=clock() - t0)
    if pending or not flushed:
        log.warning(
            "shutdown: %d of %d call(s) finished, records %s, in %.2f s",
            report.finished,
            report.calls,
            "flushed" if flushed else "NOT all flushed",
            report.elapsed_s,
        )
    return report


def _stop(session: CallSession, reason: str) -> None:
    try:
        totals = session.stop(reason)
    except Exception:
        log.exception("call=%s: stop at shutdown failed", session.call_sid)
        totals = {"failed": True}
    # Empty: its consumer is stopping it right now and will report it finished.
    if totals:
        finished(session)


def install() -> None:
    """Hook `drain` into daphne's shutdown (Twisted's reactor); idempotent."""
    global _installed
    if _installed:
        return
    # daphne installs Twisted's asyncio reactor when imported (it is in INSTALLED_APPS, so
    # under uvicorn too, where the reactor never runs and the trigger never fires).
    reactor: Any = sys.modules.get("twisted.internet.reactor")
    if reactor is not None:
        reactor.addSystemEventTrigger("before", "shutdown", _on_reactor_shutdown)
    _installed = True


def _on_reactor_shutdown() -> None:
    # Synchronous on purpose: daphne's next trigger cancels the consumers; they must not run
    # before every call is finished. The sessions need nothing from the event loop to stop.
    drain()


class Lifespan:
    """The ASGI lifespan protocol (uvicorn): drain the calls at shutdown."""

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Any],
        send: Callable[[dict[str, Any]], Any],
    ) -> None:
        """Answer startup at once (warm-up ran at import); drain at shutdown."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(drain)
                await send({"type": "lifespan.shutdown.complete"})
                return
