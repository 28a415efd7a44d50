import threading
import time

from telephony.media.framequeue import Control, FrameQueue


def frame(n: int) -> bytes:
    return n.to_bytes(2, "big") * 80


def test_full_queue_drops_oldest_media_and_counts():
    q = FrameQueue(3)
    for n in range(5):
        q.put_media(frame(n))
    assert q.drops_total == 2
    assert [q.get_nowait() for _ in range(3)] == [frame(2), frame(3), frame(4)]


def test_control_is_never_dropped_and_keeps_its_place():
    q = FrameQueue(3)
    q.put_media(frame(0))
    q.put_control(Control("dtmf", "1"), timeout=0)
    q.put_media(frame(1))
    q.put_media(frame(2))  # full: the oldest media (frame 0) goes, the control stays
    q.put_media(frame(3))  # full again: frame 1 goes
    assert q.drops_total == 2
    assert [q.get_nowait() for _ in range(3)] == [Control("dtmf", "1"), frame(2), frame(3)]


def test_control_into_a_full_queue_evicts_media_not_itself():
    q = FrameQueue(2)
    q.put_media(frame(0))
    q.put_media(frame(1))
    q.put_control(Control("stop"), timeout=0)
    assert q.drops_total == 1
    assert [q.get_nowait(), q.get_nowait()] == [frame(1), Control("stop")]


def test_control_gets_in_even_past_the_bound_when_only_control_is_queued():
    q = FrameQueue(2)
    for n in range(3):
        q.put_control(Control("mark", str(n)), timeout=0)
    assert q.qsize() == 3
    assert q.control_overflows == 1
    q2 = FrameQueue(1)
    q2.put_control(Control("mark", "a"), timeout=0)
    assert q2.put_media(frame(9)) is True  # no media to evict: the new frame is dropped
    assert q2.drops_total == 1
    assert q2.get_nowait() == Control("mark", "a")


def test_put_control_waits_gently_for_room():
    q = FrameQueue(1)
    q.put_media(frame(0))
    threading.Timer(0.05, q.get_nowait).start()
    t0 = time.perf_counter()
    q.put_control(Control("stop"), timeout=1.0)
    waited = time.perf_counter() - t0
    assert 0.02 < waited < 0.9
    assert q.drops_total == 0
    assert q.get_nowait() == Control("stop")


def test_discard_media_keeps_control_in_order():
    q = FrameQueue(10)
    for item in [frame(0), Control("mark", "a"), frame(1), Control("mark", "b"), frame(2)]:
        (q.put_media if type(item) is bytes else q.put_control)(item)
    assert q.discard_media() == 3
    assert [q.get_nowait(), q.get_nowait(), q.get_nowait()] == [
        Control("mark", "a"),
        Control("mark", "b"),
        None,
    ]


def test_get_times_out_empty():
    assert FrameQueue(1).get(timeout=0.01) is None
