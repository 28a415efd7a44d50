"""Both sides of a call on one 20 ms timeline, written out as interleaved stereo (pure).

Frames come in per side, in slot order, a few hundred milliseconds at a time. A slot is written
once both sides have passed it, so each channel holds what happened at that moment: a slot a
side has no frame for is silence. A side that falls far behind (a caller whose stream stopped,
RX waiting for a speech engine) does not hold the other back for more than `max_lag_frames`:
those slots are written with the lagging side silent, and a frame that turns up afterwards for
a slot already written is counted as late and left out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from telephony.media.audio import FRAME_BYTES, ULAW_SILENCE

Frames = Iterable[tuple[int, bytes]]


class StereoTimeline:
    """Interleave the caller (left) and the line (right), mu-law, one byte per sample each."""

    def __init__(self, *, max_lag_frames: int = 500, frame_bytes: int = FRAME_BYTES) -> None:
        self.max_lag_frames = max_lag_frames
        self.frame_bytes = frame_bytes
        self._silence = ULAW_SILENCE * frame_bytes
        self._left: deque[tuple[int, bytes]] = deque()
        self._right: deque[tuple[int, bytes]] = deque()
        self.next_slot = 0  # the first slot not written yet
        self.late = 0  # frames for a slot already written: left out, counted

    def add(self, left: Frames, right: Frames) -> None:
        """Take frames of each side (slot, frame), in slot order."""
        self._left.extend(left)
        self._right.extend(right)

    def horizon(self, left_next: int, right_next: int) -> int:
        """Return how far both sides have got: the slot before which everything can be written."""
        both = min(left_next, right_next)
        return max(both, max(left_next, right_next) - self.max_lag_frames)

    def emit(self, upto: int) -> bytes:
        """Write slots up to `upto` (exclusive): stereo mu-law, left sample first; b"" if none."""
        start = self.next_slot
        if upto <= start:
            return b""
        left = self._side(self._left, start, upto)
        right = self._side(self._right, start, upto)
        self.next_slot = upto
        stereo = bytearray(2 * len(left))
        stereo[0::2] = left
        stereo[1::2] = right
        return bytes(stereo)

    def discard(self) -> int:
        """Drop whatever is held past the last slot written (the recording ended); how many."""
        n = len(self._left) + len(self._right)
        self._left.clear()
        self._right.clear()
        return n

    def held(self) -> int:
        """Frames held, waiting for their slot to be written."""
        return len(self._left) + len(self._right)

    def _side(self, items: deque[tuple[int, bytes]], start: int, stop: int) -> bytes:
        parts: list[bytes] = []
        slot = start
        frame_bytes = self.frame_bytes
        while items and items[0][0] < stop:
            at, frame = items.popleft()
            if at < slot or len(frame) != frame_bytes:
                self.late += 1  # its slot is written already (or it is no frame at all)
                continue
            if at > slot:
                parts.append(self._silence * (at - slot))
            parts.append(frame)
            slot = at + 1
        if slot < stop:
            parts.append(self._silence * (stop - slot))
        return b"".join(parts)
