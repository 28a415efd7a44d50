from telephony.recording.tap import RecordingTap


def frame(n: int) -> bytes:
    return bytes([n % 256]) * 160


def test_caller_frames_take_consecutive_slots_and_line_frames_their_tick():
    tap = RecordingTap("CA1")
    for n in range(3):
        tap.caller(frame(n))
        tap.line(frame(100 + n), n)
    caller, line = tap.take()
    assert caller == [(0, frame(0)), (1, frame(1)), (2, frame(2))]
    assert line == [(0, frame(100)), (1, frame(101)), (2, frame(102))]
    assert (tap.caller_next, tap.line_next) == (3, 3)
    assert tap.take() == ([], [])


def test_frames_rx_q_dropped_before_a_frame_leave_their_slots_silent():
    tap = RecordingTap("CA1")
    tap.caller(frame(0), drops_total=0)
    tap.caller(frame(3), drops_total=2)  # frames 1 and 2 were dropped from rx_q
    tap.caller(frame(4), drops_total=2)
    caller, _ = tap.take()
    assert [slot for slot, _ in caller] == [0, 3, 4]


def test_a_timestamp_gap_shifts_the_frames_after_it_not_those_before():
    tap = RecordingTap("CA1")
    tap.caller(frame(0))
    tap.caller_gap(2, 5)  # registered early (the loop runs ahead of RX): applies at frame 2
    tap.caller(frame(1))
    tap.caller(frame(2))
    tap.caller(frame(3))
    caller, _ = tap.take()
    assert [slot for slot, _ in caller] == [0, 1, 7, 8]
    assert tap.caller_next == 9


def test_a_full_side_drops_and_counts_recording_frames_and_never_blocks():
    tap = RecordingTap("CA1", max_frames=2)
    for n in range(5):
        tap.line(frame(n), n)
    tap.caller(frame(0))
    assert tap.dropped == 3
    caller, line = tap.take()
    assert [slot for slot, _ in line] == [0, 1]
    assert tap.line_next == 5  # the timeline still moved on: the lost frames are silence
    assert caller == [(0, frame(0))]
    tap.line(frame(9), 5)  # room again once the writer took them
    assert tap.take()[1] == [(5, frame(9))]


def test_close_sets_the_end_and_wakes_the_writer():
    tap = RecordingTap("CA1")
    woken = []
    tap.on_close = lambda: woken.append(True)
    tap.close(42)
    assert (tap.closed, tap.end_slot, woken) == (True, 42, [True])
