"""The TX worker: the one place that produces what is sent to Twilio, on a 20 ms cadence.

Prompts (the greeting, replies) are not pushed into `tx_q` all at once: a prompt of several
seconds is longer than the queue. They wait in a feed that tops `tx_q` up each tick to a small
prefill level, and never past the back-pressure level (90 %), so a producer never overflows the
queue, never blocks a caller's loop, and q stays small (the GO/NO-GO check wants q < 20).
Each tick sends the control items at the head of the queue (marks, clear) and then one media
frame, or a silence frame when there is nothing to say, keeping the outbound cadence continuous.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from telephony.media.audio import FRAME_MS, SILENCE_FRAME
from telephony.media.cadence import Cadence
from telephony.media.framequeue import Control, FrameQueue, is_media
from telephony.media.marks import MarkTracker
from telephony.media.worker import WorkerThread

log = logging.getLogger(__name__)

# deliver(text, kind): hands one wire message to the socket's send queue (kind: media/control/clear)
Deliver = Callable[[str, str], None]


class WireMessages(Protocol):
    """Builds the outbound messages of one stream (`telephony.protocol.OutboundMessages`)."""

    def media(self, frame: bytes) -> str: ...

    def mark(self, name: str) -> str: ...

    def clear(self) -> str: ...


@dataclass(slots=True)
class Prompt:
    """Audio to play, with marks placed in it so the echoes tell how much was heard."""

    label: str
    frames: list[bytes]
    mark_every_frames: int = 50
    text: str = ""
    position: int = 0
    interrupted: bool = False

    def mark_name(self, frame_index: int) -> str:
        return f"{self.label}@{frame_index * FRAME_MS}"

    @property
    def end_mark(self) -> str:
        return f"{self.label}@end"


def heard_ms(mark_name: str | None, prompt: Prompt) -> int:
    """How much of `prompt` had played when `mark_name` (its last echoed mark) came back."""
    if not mark_name or not mark_name.startswith(prompt.label + "@"):
        return 0
    tail = mark_name.rsplit("@", 1)[1]
    return len(prompt.frames) * FRAME_MS if tail == "end" else int(tail)


class TxWorker:
    def __init__(
        self,
        *,
        name: str,
        tx_q: FrameQueue,
        messages: WireMessages,
        deliver: Deliver,
        cadence: Cadence,
        marks: MarkTracker,
        backpressure: float = 0.9,
        prefill_frames: int | None = None,
        idle_silence: bool = True,
        on_frame: Callable[[bytes, int], None] | None = None,
    ) -> None:
        """Prompts are fed into `tx_q` up to `prefill_frames`, never past `backpressure`.

        `on_frame(frame, slot)` sees every frame handed to `deliver` (idle silence included)
        with its tick's slot: 20 ms ticks since the cadence began (the recording's hand-off).
        """
        self.tx_q = tx_q
        self._messages = messages
        self._deliver = deliver
        self._cadence = cadence
        self._marks = marks
        self._high_water = max(1, int(tx_q.maxsize * backpressure))
        if prefill_frames is not None:
            self._high_water = max(1, min(self._high_water, prefill_frames))
        self._idle_frame = SILENCE_FRAME if idle_silence else None
        self._feed: deque[Prompt] = deque()
        self._lock = threading.Lock()
        self._thread = WorkerThread(name, self.run)
        self._running = True
        self.frames_sent = 0
        self.silence_sent = 0
        self.current: Prompt | None = None  # the prompt whose frames are being sent
        self.first_frame_at: float | None = None  # clock time the first frame was handed over
        self._on_frame = on_frame
        self._origin = cadence.next_deadline  # slot 0

    @property
    def error(self) -> BaseException | None:
        """The exception that ended the worker's thread, if one did."""
        return self._thread.error

    def start(self) -> None:
        """Start the worker's thread."""
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> bool:
        """Stop ticking; True if the thread ended within `timeout` s."""
        self._running = False
        return self._thread.join(timeout)

    def play(self, prompt: Prompt) -> None:
        """Queue a prompt behind what is already playing; returns at once."""
        with self._lock:
            self._feed.append(prompt)

    @property
    def speaking(self) -> bool:
        """True while prompt audio is queued or waiting in the feed."""
        return bool(self._feed) or self.tx_q.qsize() > 0

    def clear(self) -> Prompt | None:
        """Barge-in: drop queued prompt audio (control kept) and send `clear`; the cut prompt."""
        with self._lock:
            cut = self.current if self._feed or self.tx_q.qsize() else None
            self._feed.clear()
            self.current = None
        self.tx_q.discard_media()
        self.tx_q.put_control(Control("clear"), timeout=0)
        return cut

    def _refill(self) -> None:
        """Move prompt frames (and their marks) into tx_q up to the back-pressure level."""
        with self._lock:
            tx_q = self.tx_q
            while self._feed and tx_q.qsize() < self._high_water:
                prompt = self._feed[0]
                self.current = prompt
                index = prompt.position
                if index and index % prompt.mark_every_frames == 0 and index < len(prompt.frames):
                    tx_q.put_control(Control("mark", prompt.mark_name(index)), timeout=0)
                if index < len(prompt.frames):
                    tx_q.put_media(prompt.frames[index])
                    prompt.position += 1
                    continue
                tx_q.put_control(Control("mark", prompt.end_mark), timeout=0)
                self._feed.popleft()

    def _send_control(self, item: Control) -> None:
        if item.kind == "mark":
            self._marks.mark_sent(item.value)
            self._deliver(self._messages.mark(item.value), "control")
        elif item.kind == "clear":
            self._deliver(self._messages.clear(), "clear")
        else:
            log.warning("TX: unknown control item %r ignored", item)

    def run(self) -> None:
        """Tick on the cadence until stopped (the thread's loop; tests call it directly)."""
        cadence = self._cadence
        while self._running:
            cadence.wait()
            self.tick()
            cadence.advance()

    def tick(self) -> None:
        """Send the control items at the head of the queue, then one frame (or silence)."""
        tx_q = self.tx_q
        if self._feed:
            self._refill()
        item = tx_q.get_nowait()
        while item is not None and not is_media(item):
            self._send_control(item)
            item = tx_q.get_nowait()
        if item is None and self._idle_frame is not None:
            item = self._idle_frame
            self.silence_sent += 1
        if item is not None:
            self._deliver(self._messages.media(item), "media")
            if self._on_frame is not None:
                cadence = self._cadence
                self._on_frame(
                    item, round((cadence.next_deadline - self._origin) / cadence.period_s)
                )
            self.frames_sent += 1
            if self.first_frame_at is None:
                self.first_frame_at = self._cadence.now()
