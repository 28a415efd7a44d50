from telephony.media.audio import SILENCE_FRAME
from telephony.recording.timeline import StereoTimeline


def frame(n: int) -> bytes:
    return bytes([n]) * 160


def channels(stereo: bytes) -> tuple[bytes, bytes]:
    return stereo[0::2], stereo[1::2]


def test_both_sides_interleave_left_caller_right_line():
    t = StereoTimeline()
    t.add([(0, frame(1)), (1, frame(2))], [(0, frame(11)), (1, frame(12))])
    left, right = channels(t.emit(t.horizon(2, 2)))
    assert left == frame(1) + frame(2)
    assert right == frame(11) + frame(12)
    assert t.next_slot == 2


def test_a_slot_without_a_frame_is_silence_not_a_shift():
    t = StereoTimeline()
    t.add([(0, frame(1)), (3, frame(4))], [(s, frame(10 + s)) for s in range(4)])
    left, right = channels(t.emit(4))
    assert left == frame(1) + SILENCE_FRAME * 2 + frame(4)
    assert right == b"".join(frame(10 + s) for s in range(4))


def test_slots_wait_for_the_slower_side_within_the_lag_bound():
    t = StereoTimeline(max_lag_frames=10)
    assert t.horizon(left_next=3, right_next=8) == 3
    assert t.horizon(left_next=3, right_next=50) == 40  # the caller is 47 frames behind


def test_a_frame_for_a_slot_already_written_is_late_and_left_out():
    t = StereoTimeline()
    t.add([], [(0, frame(1)), (1, frame(2))])
    t.emit(2)
    t.add([(1, frame(9)), (2, frame(3))], [(2, frame(4))])
    left, right = channels(t.emit(3))
    assert (left, right) == (frame(3), frame(4))
    assert t.late == 1


def test_nothing_to_write_gives_nothing_and_what_is_past_the_end_is_discarded():
    t = StereoTimeline()
    assert t.emit(0) == b""
    t.add([(5, frame(1))], [(5, frame(2)), (6, frame(3))])
    t.emit(5)
    assert t.held() == 3
    assert t.discard() == 3
    assert t.held() == 0
