"""Twilio's side of the audio we send it: a buffer played at real time, marks echoed in line (pure).

Time comes in as a clock parameter and `advance(now)`, so tests drive it without sleeping.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from telephony.media.audio import SAMPLE_RATE


class TwilioPlayback:
    """Twilio's side of outbound audio: a buffer played at real time, with marks in line.

    Audio that arrives faster than real time waits in the buffer; a mark is echoed once every
    frame received before it has played; `clear` drops what is buffered and releases every
    pending mark at once. When the buffer runs dry, the next frame starts when it arrives.
    """

    def __init__(self, clock: Callable[[], float], *, sample_rate: int = SAMPLE_RATE) -> None:
        self._clock = clock
        self._bytes_per_s = sample_rate  # mu-law: one byte per sample
        self._items: deque[bytes | str] = deque()  # frames (bytes) and mark names (str), in order
        self._buffered = 0  # frames in `_items`
        self._cursor = 0.0  # when the frame at the head of the buffer starts (started) playing
        self.frames_received = 0
        self.frames_played = 0
        self.frames_cleared = 0
        self.played_s = 0.0
        self.max_buffered = 0

    @property
    def buffered_frames(self) -> int:
        """Frames received and not yet played."""
        return self._buffered

    @property
    def pending_marks(self) -> list[str]:
        """Names of marks not yet reached, in order."""
        return [item for item in self._items if isinstance(item, str)]

    def receive_media(self, frame: bytes) -> None:
        """Queue one payload of mu-law audio for playback."""
        if not frame:
            return
        if self._buffered == 0:
            # Nothing left to play: this frame starts now, not when the last one ended.
            self._cursor = max(self._cursor, self._clock())
        self._items.append(frame)
        self._buffered += 1
        self.frames_received += 1
        self.max_buffered = max(self.max_buffered, self._buffered)

    def receive_mark(self, name: str) -> None:
        """Queue a mark behind the audio received so far."""
        self._items.append(name)

    def receive_clear(self) -> list[str]:
        """Drop the buffered audio and return every pending mark, to be echoed at once."""
        marks = [item for item in self._items if isinstance(item, str)]
        self.frames_cleared += self._buffered
        self._items.clear()
        self._buffered = 0
        return marks

    def advance(self, now: float) -> list[str]:
        """Play everything that has finished by `now`; return the marks reached, in order."""
        reached: list[str] = []
        items = self._items
        while items:
            head = items[0]
            if isinstance(head, str):
                reached.append(head)
                items.popleft()
                continue
            duration = len(head) / self._bytes_per_s
            if self._cursor + duration > now + 1e-9:  # float sums of 0.02 must not miss a frame
                break
            items.popleft()
            self._cursor += duration
            self._buffered -= 1
            self.frames_played += 1
            self.played_s += duration
        return reached
