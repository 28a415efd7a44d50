"""The asyncio side of TX: a bounded queue between the TX thread and the one socket send.

The TX thread hands each wire message over through the loop's `LoopHandoff`; one coroutine of the
consumer drains the queue into the socket, so nothing else ever sends. Bounded like the other
queues: when the socket falls behind, the oldest media message is dropped (and counted), control
messages always get in, and a `clear` discards the media still waiting ahead of it.
"""

from __future__ import annotations

import asyncio
from collections import deque

from telephony.media.framequeue import drop_oldest_media

MEDIA, CONTROL, CLEAR = "media", "control", "clear"


def _is_media(item: tuple[str, str]) -> bool:
    return item[0] == MEDIA


class SendQueue:
    """Loop-confined (not thread-safe): only touched from the event loop it was created on."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[tuple[str, str]] = deque()
        self._ready = asyncio.Event()
        self._closed = False
        self.drops_total = 0
        self.discarded_by_clear = 0

    def qsize(self) -> int:
        return len(self._items)

    def put(self, text: str, kind: str) -> None:
        """Queue one message (called on the loop, via call_soon_threadsafe from the TX thread)."""
        if self._closed:
            return
        items = self._items
        if kind == CLEAR:
            kept = deque(item for item in items if not _is_media(item))
            self.discarded_by_clear += len(items) - len(kept)
            self._items = items = kept
        elif kind == MEDIA and len(items) >= self.maxsize:
            if not drop_oldest_media(items, _is_media):
                self.drops_total += 1  # only control queued: the new frame is the one to go
                return
            self.drops_total += 1
        items.append((kind, text))
        self._ready.set()

    def close(self) -> None:
        """Wake the drain so it ends once what is queued has been sent."""
        self._closed = True
        self._ready.set()

    async def get(self) -> str | None:
        """The next message to send, or None once closed and empty."""
        while not self._items:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()[1]
