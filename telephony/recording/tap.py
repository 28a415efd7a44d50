"""One call's recording hand-off: RX and TX drop frames in, the writer thread takes them out.

Each side is a single-producer, single-consumer deque of (slot, frame): the RX thread fills the
caller's, the TX thread the line's, the writer thread empties both. `deque.append` and
`popleft` are atomic, so nothing here takes a lock on the audio path. A side holding
`max_frames` frames refuses the next one and counts it in `dropped`: the recording loses a
frame, the call loses nothing and no tick waits.

Slots are 20 ms frames on the call's timeline from the stream's start. The line's slot comes
from the TX cadence (one tick, one slot). The caller's is the frame's place in the inbound
stream (frames RX took, plus those rx_q dropped before it) plus the frames Twilio's timestamps
say never came (`caller_gap`, from the event loop): an inbound gap becomes silence in the
recording, not a shift.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class RecordingTap:
    """The bounded hand-off of one call's frames to the recording writer."""

    __slots__ = (
        "_caller",
        "_gap_total",
        "_gaps",
        "_line",
        "_max",
        "_taken",
        "call_sid",
        "caller_next",
        "closed",
        "dropped",
        "end_slot",
        "line_next",
        "on_close",
    )

    def __init__(self, call_sid: str, *, max_frames: int = 500) -> None:
        if max_frames < 1:
            raise ValueError("max_frames must be at least 1")
        self.call_sid = call_sid
        self._max = max_frames
        self._caller: deque[tuple[int, bytes]] = deque()
        self._line: deque[tuple[int, bytes]] = deque()
        self._taken = 0  # caller frames handed over so far
        self._gaps: deque[tuple[int, int]] = deque()  # (inbound index, silent frames before it)
        self._gap_total = 0
        self.caller_next = 0  # the caller's next slot (RX thread)
        self.line_next = 0  # one past the line's latest slot (TX thread)
        self.dropped = 0  # frames refused because a side was full
        self.closed = False
        self.end_slot: int | None = None  # set by `close`: the recording stops there
        self.on_close: Callable[[], None] | None = None  # the writer's wake-up, if it wants one

    # --- the audio path: never blocks, never raises on a full side --------------------------------

    def caller(self, frame: bytes, drops_total: int = 0) -> None:
        """Hand over the next caller frame RX took; `drops_total` is rx_q's running drop count.

        rx_q drops the oldest frames, so every frame it dropped so far came before this one.
        """
        index = self._taken + drops_total  # its place in the inbound stream
        self._taken += 1
        gaps = self._gaps
        while gaps and gaps[0][0] <= index:
            self._gap_total += gaps.popleft()[1]
        slot = index + self._gap_total
        if len(self._caller) >= self._max:
            self.dropped += 1
        else:
            self._caller.append((slot, frame))
        # After the append: a writer that reads `caller_next` then takes finds every frame before.
        self.caller_next = slot + 1

    def caller_gap(self, before_index: int, frames: int) -> None:
        """Leave `frames` caller slots silent before inbound frame `before_index` (event loop)."""
        if frames > 0:
            self._gaps.append((before_index, frames))

    def line(self, frame: bytes, slot: int) -> None:
        """Hand over the frame TX sent in `slot` (silence included)."""
        if len(self._line) >= self._max:
            self.dropped += 1
        else:
            self._line.append((slot, frame))
        if slot >= self.line_next:  # after the append, as for the caller
            self.line_next = slot + 1

    # --- the end, from the thread that stops the call ---------------------------------------------

    def close(self, end_slot: int) -> None:
        """End the recording at `end_slot` (exclusive); frames handed over later are ignored."""
        self.end_slot = max(0, end_slot)
        self.closed = True
        if self.on_close is not None:
            self.on_close()

    # --- the writer thread ------------------------------------------------------------------------

    def take(self) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]]:
        """Remove and return what both sides hold now: (caller frames, line frames), in order."""
        return _drain(self._caller), _drain(self._line)

    def queued(self) -> int:
        """Frames waiting for the writer, both sides."""
        return len(self._caller) + len(self._line)


def _drain(side: deque[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    # Only what is there now: the producer may append meanwhile, and that waits for next time.
    return [side.popleft() for _ in range(len(side))]
