"""The bounded frame queue of RX and TX: drop the oldest media when full, never drop control.

Media items are `bytes` (one 20 ms frame); anything else is a control item. Both directions use
this one class so their policies stay symmetric.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Item = Any  # bytes = media; any other object = control


def is_media(item: Item) -> bool:
    return type(item) is bytes


@dataclass(frozen=True, slots=True)
class Control:
    """A control item: never dropped, kept in order with the media around it."""

    kind: str  # RX: "stop", "dtmf"; TX: "mark", "clear"
    value: str = ""


def drop_oldest_media(items: deque[Item], media: Callable[[Item], bool] = is_media) -> bool:
    """Remove the oldest media item, keeping every control item; False if there is none."""
    if items and media(items[0]):  # the common case: the head is media
        items.popleft()
        return True
    for index, item in enumerate(items):
        if media(item):
            del items[index]
            return True
    return False


class FrameQueue:
    """A thread-safe FIFO bounded to `maxsize` items with drop-oldest for media only."""

    def __init__(self, maxsize: int, *, name: str = "q") -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.name = name
        self._items: deque[Item] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self.drops_total = 0  # media frames dropped since creation
        self.control_overflows = 0  # control items let in past maxsize (none is ever dropped)
        # drops_total when the last item was taken: drop-oldest means every frame dropped by
        # then came before that item (the recording places the caller's frames with it).
        self.drops_at_take = 0

    def qsize(self) -> int:
        return len(self._items)

    def put_media(self, frame: bytes) -> bool:
        """Enqueue a media frame, dropping the oldest media if full; True if one was dropped."""
        with self._lock:
            dropped = False
            if len(self._items) >= self.maxsize:
                dropped = drop_oldest_media(self._items)
                if not dropped:
                    # Only control items are queued: the new frame is the oldest media there is.
                    self.drops_total += 1
                    return True
                self.drops_total += 1
            self._items.append(frame)
            self._not_empty.notify()
            return dropped

    def put_control(self, item: Item, timeout: float = 1.0) -> None:
        """Enqueue a control item; wait gently for room, then make room by dropping media."""
        with self._lock:
            if len(self._items) >= self.maxsize:
                self._not_full.wait_for(lambda: len(self._items) < self.maxsize, timeout)
            if len(self._items) >= self.maxsize:
                if drop_oldest_media(self._items):
                    self.drops_total += 1
                else:
                    self.control_overflows += 1  # never drop control, even past the bound
            self._items.append(item)
            self._not_empty.notify()

    def get(self, timeout: float | None = None) -> Item | None:
        """Take the oldest item, waiting up to `timeout` seconds; None if there is none."""
        with self._lock:
            if not self._items and not self._not_empty.wait_for(lambda: self._items, timeout):
                return None
            item = self._items.popleft()
            self.drops_at_take = self.drops_total
            self._not_full.notify()
            return item

    def get_nowait(self) -> Item | None:
        """Take the oldest item, or None at once if empty."""
        with self._lock:
            if not self._items:
                return None
            item = self._items.popleft()
            self.drops_at_take = self.drops_total
            self._not_full.notify()
            return item

    def discard_media(self) -> int:
        """Drop every queued media frame (barge-in), keeping control items in order."""
        with self._lock:
            kept = deque(item for item in self._items if type(item) is not bytes)
            removed = len(self._items) - len(kept)
            self._items = kept
            self._not_full.notify_all()
            return removed

    def wait_below(self, level: int, timeout: float | None = None) -> bool:
        """Block until fewer than `level` items are queued (producer back-pressure)."""
        with self._lock:
            return self._not_full.wait_for(lambda: len(self._items) < level, timeout)

    def drain_matching(self, predicate: Callable[[Item], bool]) -> list[Item]:
        """Remove and return the items matching `predicate` (used at shutdown)."""
        with self._lock:
            taken = [item for item in self._items if predicate(item)]
            self._items = deque(item for item in self._items if not predicate(item))
            self._not_full.notify_all()
            return taken
