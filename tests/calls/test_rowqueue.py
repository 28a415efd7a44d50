"""The recorder's queue on its own: shedding, refusing, the order rows leave in, flush marks."""

from __future__ import annotations

from calls.rowqueue import Note, RowQueue
from calls.rows import ENDED, EVENT, METRIC, PARTIAL, STARTED


def fill(queue: RowQueue, *kinds: str, call_sid: str = "CA1") -> None:
    for n, kind in enumerate(kinds):
        queue.put(kind, call_sid, f"{kind}{n}")


def rows(queue: RowQueue) -> list[str]:
    batch = queue.take(len(queue))
    queue.finish(batch)
    return [item.row for item in batch]


def test_rows_leave_in_the_order_they_came_whatever_their_kind() -> None:
    queue = RowQueue(maxsize=10)
    fill(queue, STARTED, PARTIAL, METRIC, "final", PARTIAL, EVENT)
    batch = queue.take(4)
    assert [item.seq for item in batch] == [1, 2, 3, 4]
    assert [item.kind for item in batch] == [STARTED, PARTIAL, METRIC, "final"]
    queue.finish(batch)
    assert [item.kind for item in queue.take(10)] == [PARTIAL, EVENT]
    assert queue.enqueued == {STARTED: 1, PARTIAL: 2, METRIC: 1, "final": 1, EVENT: 1}


def test_a_full_queue_sheds_the_oldest_sheddable_row_for_any_new_one() -> None:
    queue = RowQueue(maxsize=4)
    fill(queue, PARTIAL, "final", METRIC, PARTIAL)
    assert queue.put("final", "CA1", "late final")
    assert queue.put(PARTIAL, "CA1", "late partial")
    assert len(queue) == 4
    assert queue.shed == {PARTIAL: 1, METRIC: 1}
    assert queue.shed_counts("CA1") == {PARTIAL: 1, METRIC: 1}
    assert rows(queue) == ["final1", "partial3", "late final", "late partial"]
    assert queue.max_queued == 4
    assert queue.lost == {}


def test_a_queue_full_of_rows_it_must_keep_refuses_new_ones_and_counts_them() -> None:
    queue = RowQueue(maxsize=2)
    fill(queue, "final", EVENT)
    assert not queue.put(PARTIAL, "CA1", "p")  # shed at once: there is nothing older to shed
    assert not queue.put("final", "CA1", "f")
    assert not queue.put("final", "CA1", "f again")
    assert (queue.shed, queue.lost) == ({PARTIAL: 1}, {"final": 2})
    assert queue.enqueued == {"final": 1, EVENT: 1}
    assert rows(queue) == ["final0", "event1"]


def test_each_shed_or_loss_is_noted_once_per_call_and_kind() -> None:
    queue = RowQueue(maxsize=1)
    fill(queue, EVENT)
    for _ in range(3):
        queue.put(PARTIAL, "CA1", "p")
        queue.put("final", "CA1", "f")
    queue.put(PARTIAL, "CA2", "p")
    assert queue.take_notes() == [
        Note("shed", "CA1", PARTIAL),
        Note("lost", "CA1", "final"),
        Note("shed", "CA2", PARTIAL),
    ]
    assert queue.take_notes() == []
    queue.put(PARTIAL, "CA1", "p")
    assert queue.take_notes() == []  # still the same call: counted, not noted again


def test_a_flush_waits_for_the_rows_queued_before_it_including_those_in_flight() -> None:
    queue = RowQueue(maxsize=10)
    fill(queue, STARTED, PARTIAL, call_sid="CA1")
    fill(queue, STARTED, call_sid="CA2")
    assert (queue.flush_target("CA1"), queue.flush_target("CA2"), queue.flush_target()) == (2, 3, 3)
    assert queue.flush_target("CA-unknown") == 0
    assert queue.done_through() == 0
    batch = queue.take(2)
    assert queue.done_through() == 0  # taken is not written
    queue.finish(batch)
    assert queue.done_through() == 2  # CA1 is done, CA2 not yet
    queue.finish(queue.take(10))
    assert queue.done_through() == 3


def test_shed_and_lost_rows_count_as_done() -> None:
    queue = RowQueue(maxsize=2)
    fill(queue, PARTIAL, PARTIAL)
    queue.put(PARTIAL, "CA1", "newest")
    assert queue.done_through() == 1  # the first partial was shed
    queue.count_lost(queue.take(10))
    queue.finish([])
    assert queue.done_through() == queue.flush_target() == 3


def test_a_calls_bookkeeping_is_forgotten_once_its_end_is_done() -> None:
    queue = RowQueue(maxsize=2)
    fill(queue, PARTIAL, PARTIAL)
    queue.put(ENDED, "CA1", "end")  # sheds a partial
    assert queue.shed_counts("CA1") == {PARTIAL: 1}
    batch = queue.take(10)
    queue.count_written(batch)
    queue.finish(batch)
    assert queue.shed_counts("CA1") == {}
    assert queue.flush_target("CA1") == 0
    assert queue.written == {PARTIAL: 1, ENDED: 1}
    assert queue.batches == 1


def test_an_end_followed_by_more_rows_keeps_the_call_until_they_are_done() -> None:
    queue = RowQueue(maxsize=10)
    fill(queue, ENDED, PARTIAL)  # a late partial after the end
    batch = queue.take(1)
    queue.finish(batch)
    assert queue.flush_target("CA1") == 2
    queue.finish(queue.take(1))
    assert queue.done_through() == 2
