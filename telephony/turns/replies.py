"""The reply hook: what the line says back. A setting names a callable; `echo` is the example.

The hook gets each FINAL (and each DTMF digit) with the call's context, in a worker thread (never
the RX thread), and may return text to say; the session synthesizes it and plays it through TX,
where a barge-in can interrupt it.

A FINAL made locally (the engine was late) is often the stale latest partial; the engine's own
final usually follows as a revision. So a local FINAL waits up to `settle_ms` for its revision
and the hook gets the better text, once: one reply per utterance either way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from django.utils.module_loading import import_string

from telephony.turns.transcript import TranscriptEvent

log = logging.getLogger(__name__)

# Reply hooks may be slow (a model, a web service): they run here, never on the RX thread.
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="reply")


@dataclass(frozen=True, slots=True)
class Turn:
    """One thing the caller did: said something (a FINAL) or pressed a key."""

    call_sid: str
    kind: str  # "final" or "dtmf"
    text: str  # the FINAL's text, or the digit
    utterance: int = 0
    digits: str = ""  # every digit pressed so far on this call
    finals: tuple[str, ...] = field(default_factory=tuple)  # every FINAL so far, oldest first


ReplyHook = Callable[[Turn], str | None]


def echo(turn: Turn) -> str | None:
    """Repeat what was heard (for demonstrations and tests)."""
    if turn.kind == "dtmf":
        return f"You pressed {turn.text}."
    return f"You said: {turn.text}" if turn.text else None


def load_hook(path: str) -> ReplyHook | None:
    """Import the hook a setting names (`module.callable`, or `echo`); None when unset."""
    if not path:
        return None
    if path == "echo":
        return echo
    return import_string(path)


class Replier:
    """One call's turns to the hook: finals (settled), digits; `say` plays what it returns."""

    def __init__(
        self,
        *,
        call_sid: str,
        hook: ReplyHook,
        say: Callable[[str], None],
        on_error: Callable[[str], None],
        settle_ms: int = 2000,
        clock: Callable[[], float] = time.perf_counter,
        executor: Executor = _pool,
    ) -> None:
        self.call_sid = call_sid
        self._hook = hook
        self._say = say
        self._on_error = on_error
        self._settle_s = settle_ms / 1000.0
        self._clock = clock
        self._executor = executor
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[float, Turn]] = {}  # local finals awaiting a revision
        self._finals: list[str] = []
        self._digits = ""
        self.closed = False

    def transcript(self, event: TranscriptEvent) -> None:
        """Take a FINAL or a revision (partials are not turns)."""
        with self._lock:
            if event.kind == "final":
                self._finals.append(event.text)
                turn = Turn(
                    self.call_sid,
                    "final",
                    event.text,
                    utterance=event.utterance,
                    digits=self._digits,
                    finals=tuple(self._finals),
                )
                if event.local:
                    self._waiting[event.utterance] = (self._clock() + self._settle_s, turn)
                    return
            elif event.kind == "revision" and event.utterance in self._waiting:
                _, turn = self._waiting.pop(event.utterance)
                finals = (*turn.finals[:-1], event.text)
                turn = replace(turn, text=event.text, finals=finals)
            else:
                return
        self._submit(turn)

    def dtmf(self, digit: str) -> None:
        with self._lock:
            self._digits += digit
            turn = Turn(self.call_sid, "dtmf", digit, digits=self._digits)
        self._submit(turn)

    def tick(self) -> None:
        """Hand over local finals whose revision did not come in time."""
        if not self._waiting:
            return
        now = self._clock()
        with self._lock:
            due = [u for u, (deadline, _) in self._waiting.items() if deadline <= now]
            turns = [self._waiting.pop(u)[1] for u in due]
        for turn in turns:
            self._submit(turn)

    def close(self) -> None:
        self.closed = True

    def _submit(self, turn: Turn) -> None:
        if not self.closed:
            self._executor.submit(self._run, turn)

    def _run(self, turn: Turn) -> None:
        try:
            text = self._hook(turn)
            if text and not self.closed:
                self._say(text)
        except Exception as exc:
            log.exception("call=%s reply hook failed", self.call_sid)
            self._on_error(f"reply hook failed: {exc}")
