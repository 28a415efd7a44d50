"""The recorder's bounded queue of rows, and its ledger of what became of each (pure, no locks).

When the queue is full, partials and metric samples are shed, oldest first. FINALs, revisions,
call rows and events are never shed: they are refused only if the whole queue is already rows
it must keep (the database has been gone for a long while), and counted as lost. Every row
queued gets a sequence number, so a flush can wait until everything queued so far (for one
call, or all) is written, shed or lost.

Not thread-safe: its owner (the recorder) holds one lock around every call.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from calls.rows import ENDED, METRIC, PARTIAL

# The only kinds that may be shed: a partial is replaced by the next one, a sample is one
# second among many; everything else would leave a hole in the call's record.
SHEDDABLE = frozenset({PARTIAL, METRIC})


@dataclass(slots=True)
class Item:
    """A queued row with its sequence number."""

    seq: int
    kind: str
    call_sid: str
    row: Any


@dataclass(frozen=True, slots=True)
class Note:
    """Rows of a call were shed or lost: to be logged once per call and kind."""

    what: str  # "shed" or "lost"
    call_sid: str
    kind: str


class RowQueue:
    """Rows waiting for the writer: kept rows and sheddable rows, taken in the order queued."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._keep: deque[Item] = deque()  # never shed
        self._shed: deque[Item] = deque()  # partials and samples, shed oldest first
        self._seq = 0
        self._inflight_min: int | None = None  # lowest seq of the batch being written
        self._last_seq: dict[str, int] = {}  # per call: the last seq queued for it
        self._shed_by_call: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._noted: defaultdict[str, set[str]] = defaultdict(set)  # kinds noted, by call
        self._notes: list[Note] = []

        self.enqueued: Counter[str] = Counter()
        self.written: Counter[str] = Counter()
        self.shed: Counter[str] = Counter()
        self.lost: Counter[str] = Counter()
        self.max_queued = 0
        self.batches = 0

    def __len__(self) -> int:
        return len(self._keep) + len(self._shed)

    def put(self, kind: str, call_sid: str, row: Any) -> bool:
        """Queue a row; return False if it was shed or lost instead (counted either way)."""
        size = len(self._keep) + len(self._shed)
        if size >= self.maxsize:
            if self._shed:
                old = self._shed.popleft()
                self._count_shed(old.kind, old.call_sid)
                size -= 1
            elif kind in SHEDDABLE:
                self._count_shed(kind, call_sid)
                return False
            else:
                self.lost[kind] += 1
                self._note_once("lost", call_sid, kind)
                return False
        self._seq += 1
        item = Item(self._seq, kind, call_sid, row)
        (self._shed if kind in SHEDDABLE else self._keep).append(item)
        self._last_seq[call_sid] = self._seq
        self.enqueued[kind] += 1
        self.max_queued = max(self.max_queued, size + 1)
        return True

    def take(self, limit: int) -> list[Item]:
        """Take up to `limit` of the oldest rows across both kinds, in the order they were queued.

        The batch is in flight until `finish`: a flush waits for it too.
        """
        batch: list[Item] = []
        keep, shed = self._keep, self._shed
        while len(batch) < limit and (keep or shed):
            if not shed or (keep and keep[0].seq < shed[0].seq):
                batch.append(keep.popleft())
            else:
                batch.append(shed.popleft())
        if batch:
            self._inflight_min = batch[0].seq
        return batch

    def finish(self, batch: Iterable[Item]) -> None:
        """End the batch in flight (written or lost); forget the calls whose end it held."""
        self._inflight_min = None
        self.batches += 1
        for item in batch:
            if item.kind == ENDED and self._last_seq.get(item.call_sid) == item.seq:
                # The call's last row is done: a flush for it returns at once from now on.
                del self._last_seq[item.call_sid]
                self._shed_by_call.pop(item.call_sid, None)
                self._noted.pop(item.call_sid, None)

    def count_written(self, items: Iterable[Item]) -> None:
        """Count rows the database now holds."""
        self.written.update(item.kind for item in items)

    def count_lost(self, items: Iterable[Item]) -> None:
        """Count rows that will never be written."""
        self.lost.update(item.kind for item in items)

    def flush_target(self, call_sid: str | None = None) -> int:
        """Return the seq a flush waits for: the last row queued (for `call_sid`, or at all)."""
        return self._seq if call_sid is None else self._last_seq.get(call_sid, 0)

    def done_through(self) -> int:
        """Return the highest seq such that every row up to it is written, shed or lost."""
        pending = [s for s in (self._inflight_min,) if s is not None]
        pending += [q[0].seq for q in (self._keep, self._shed) if q]
        return min(pending) - 1 if pending else self._seq

    def shed_counts(self, call_sid: str) -> dict[str, int]:
        """Return what was shed for a call whose end is not written yet."""
        return dict(self._shed_by_call.get(call_sid, {}))

    def take_notes(self) -> list[Note]:
        """Return the sheds and losses not logged yet."""
        notes, self._notes = self._notes, []
        return notes

    def _count_shed(self, kind: str, call_sid: str) -> None:
        self.shed[kind] += 1
        self._shed_by_call[call_sid][kind] += 1
        self._note_once("shed", call_sid, kind)

    def _note_once(self, what: str, call_sid: str, kind: str) -> None:
        # Logged by the writer, not here: a caller's thread must not wait on a log handler.
        if kind not in self._noted[call_sid]:
            self._noted[call_sid].add(kind)
            self._notes.append(Note(what, call_sid, kind))
