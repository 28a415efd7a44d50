"""Barge-in: the caller talks over a prompt, and the line stops talking at once.

The rule: `min_speech_ms` of continuous speech (the VAD's verdict on each inbound frame) while
TX has prompt audio queued cuts the prompt on that very frame, and TX sends `clear` on its
next tick. Shorter sounds ("mm", a cough) never cut: webrtcvad itself holds "speech" 80-120 ms
past a sound, so the bar sits well above one. What the caller heard of the cut prompt is known
from the last mark Twilio echoed before the clear (Twilio echoes every pending mark on a clear,
so it must be read first).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from telephony.media.marks import MarkTracker
from telephony.media.tx import TxWorker, heard_ms

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Interruption:
    """A prompt cut by the caller: how much of it they heard, of how much."""

    prompt: str  # its label
    heard_ms: int
    total_ms: int
    text: str

    def as_dict(self) -> dict[str, Any]:
        """Return the fields as a dict (a call event's data)."""
        return asdict(self)


class BargeIn:
    """Watch the caller's speech frame by frame (on the RX thread) and cut TX's prompt."""

    def __init__(
        self,
        *,
        call_sid: str,
        tx: TxWorker,
        marks: MarkTracker,
        min_speech_ms: int,
        frame_ms: int,
        on_cut: Callable[[Interruption], None],
        enabled: bool = True,
    ) -> None:
        self._call_sid = call_sid
        self._tx = tx
        self._marks = marks
        self._frames_needed = max(1, min_speech_ms // frame_ms)
        self._frame_ms = frame_ms
        self._on_cut = on_cut
        self._enabled = enabled
        self._speech_run = 0  # consecutive speech frames
        self.interrupted: list[Interruption] = []

    def frame(self, speech: bool) -> None:
        """Take the VAD's verdict on one inbound frame; cut the prompt once speech lasts."""
        if not speech:
            self._speech_run = 0
            return
        self._speech_run += 1
        if self._speech_run == self._frames_needed and self._enabled:
            self._cut()

    def _cut(self) -> None:
        if not self._tx.speaking:
            return
        last_echoed = self._marks.last_echoed  # before the clear: Twilio echoes the rest at once
        prompt = self._tx.clear()
        if prompt is None:
            return
        prompt.interrupted = True
        cut = Interruption(
            prompt=prompt.label,
            heard_ms=heard_ms(last_echoed, prompt),
            total_ms=len(prompt.frames) * self._frame_ms,
            text=prompt.text,
        )
        self.interrupted.append(cut)
        log.info(
            "call=%s barge-in: %s cut after %d of %d ms heard",
            self._call_sid,
            cut.prompt,
            cut.heard_ms,
            cut.total_ms,
        )
        self._on_cut(cut)
