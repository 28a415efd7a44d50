"""A call's recording tap, fed by the session's RX and TX as the call runs (no writer)."""

import time

from telephony.media.audio import SILENCE_FRAME
from telephony.observer import CallObserver
from telephony.recording.tap import RecordingTap
from telephony.session import CallSession, SessionConfig
from telephony.stt.none import NullSttEngine
from telephony.turns.endpointing import Endpointer
from tests.helpers.clock import FakeClock
from tests.helpers.speech import VOICE


def frame(n: int) -> bytes:
    return bytes([n % 200]) * 160


class Recording(CallObserver):
    def __init__(self, max_frames: int = 500) -> None:
        self.tap: RecordingTap | None = None
        self.max_frames = max_frames
        self.totals: dict = {}

    def recording(self, call_sid, stream_sid):
        self.tap = RecordingTap(call_sid, max_frames=self.max_frames)
        return self.tap

    def ended(self, session, reason, totals):
        self.totals = totals


def make_session(clock, observer: CallObserver, **config) -> CallSession:
    session = CallSession(
        call_sid="CA1",
        stream_sid="MZ1",
        stt_engine=NullSttEngine(),
        render_prompt=lambda text: VOICE * 300,  # 6 s to play
        deliver=lambda text, kind: None,
        observer=observer,
        config=SessionConfig(**{"barge_in_min_speech_ms": 300, **config}),
        endpointer_factory=lambda **kw: Endpointer(**kw, min_speech_ms=60),
        clock=clock,
        wall_clock=clock,
    )
    return session


def started_session(clock: FakeClock, observer: CallObserver, **config) -> CallSession:
    """A built session with its (null) STT open, as the consumer has it once `start` is in."""
    session = make_session(clock, observer, **config)
    session.build()
    session.stt = session.stt_engine.open("CA1", session.endpointer.hypothesis)
    return session


def play_tick(session: CallSession, clock: FakeClock) -> None:
    """One 20 ms tick of the call: RX takes what came, TX sends one frame, time moves on."""
    session.rx.tick()
    session.tx.tick()
    session.tx._cadence.advance()
    clock.now += 0.02


def test_no_tap_no_recording():
    session = make_session(FakeClock(), CallObserver())
    session.build()
    assert session.recording is None
    session.rx_timestamp(10_000)  # nothing to do, nothing breaks
    assert "recording_dropped" not in session.totals()


def test_rx_hands_every_frame_it_takes_and_tx_every_frame_it_sends():
    clock = FakeClock()
    observer = Recording()
    session = started_session(clock, observer)
    session.greeting = session.say("hello", label="greeting")
    for n in range(30):
        session.rx_timestamp(n * 20)
        session.rx_enqueue(frame(n))
        play_tick(session, clock)
    tap = observer.tap
    caller, line = tap.take()
    assert caller == [(n, frame(n)) for n in range(30)]
    assert [slot for slot, _ in line] == list(range(30))
    assert [f for _, f in line] == [VOICE] * 30  # the greeting, frame by frame


def test_the_line_goes_quiet_in_the_recording_when_the_caller_barges_in():
    clock = FakeClock()
    observer = Recording()
    session = started_session(clock, observer)
    session.greeting = session.say("a long greeting", label="greeting")
    for n in range(60):
        session.rx_enqueue(VOICE if n >= 20 else SILENCE_FRAME)  # the caller talks over it
        play_tick(session, clock)
    assert session.interrupted  # barge-in after 300 ms of speech
    _, line = observer.tap.take()
    frames = [f for _, f in line]
    cut = frames.index(SILENCE_FRAME)
    assert 34 <= cut <= 38  # 20 frames of silence + 15 of speech, then the next tick
    assert frames[:cut] == [VOICE] * cut
    assert frames[cut:] == [SILENCE_FRAME] * (60 - cut)  # the prompt had 6 s left


def test_audio_twilio_never_sent_is_a_gap_in_the_callers_slots():
    clock = FakeClock()
    observer = Recording()
    session = started_session(clock, observer)
    for n in range(3):
        session.rx_timestamp(n * 20)
        session.rx_enqueue(frame(n))
    clock.now += 0.2
    session.rx_timestamp(160)  # 100 ms (5 frames) never came
    session.rx_enqueue(frame(3))
    session.rx_timestamp(180)
    session.rx_enqueue(frame(4))
    for _ in range(5):
        session.rx.tick()
    caller, _ = observer.tap.take()
    assert [slot for slot, _ in caller] == [0, 1, 2, 8, 9]


def test_a_timestamp_far_ahead_of_the_call_is_held_to_its_clock():
    clock = FakeClock()
    observer = Recording()
    session = started_session(clock, observer)
    clock.now += 2.0  # two seconds into the call
    session.rx_timestamp(3_600_000)  # "an hour in": a hostile or broken client
    session.rx_enqueue(frame(0))
    session.rx.tick()
    caller, _ = observer.tap.take()
    assert caller[0][0] == 150  # 2 s of call + 1 s of leeway, not an hour of silence


def test_frames_rx_q_dropped_are_silence_in_the_recording_not_a_shift():
    clock = FakeClock()
    observer = Recording()
    session = started_session(clock, observer, rx_queue_frames=4)
    for n in range(7):  # 3 more than rx_q holds: frames 0-2 are dropped
        session.rx_enqueue(frame(n))
    for _ in range(4):
        session.rx.tick()
    caller, _ = observer.tap.take()
    assert caller == [(3, frame(3)), (4, frame(4)), (5, frame(5)), (6, frame(6))]


def test_a_full_recording_tap_drops_recording_frames_only():
    clock = FakeClock()
    observer = Recording(max_frames=5)
    session = started_session(clock, observer)
    for n in range(20):  # the writer never comes: the tap fills
        session.rx_enqueue(frame(n))
        play_tick(session, clock)
    totals = session.totals()
    assert totals["frames_written"] == 20  # every frame still reached STT
    assert totals["frames_out"] == 20  # and TX sent every tick
    assert totals["rx_drops"] == 0
    assert totals["tx_drops"] == 0
    assert totals["recording_dropped"] == 30  # 15 per side
    assert observer.tap.queued() == 10


def test_stop_closes_the_recording_where_the_call_ended():
    observer = Recording()
    session = make_session(time.perf_counter, observer, greeting_text="")
    session.start()
    try:
        for n in range(10):
            session.rx_timestamp(n * 20)
            session.rx_enqueue(frame(n))
        time.sleep(0.3)
    finally:
        session.stop("stop")
    tap = observer.tap
    assert tap.closed
    # The end is where the line was when the stop came (0.3 s in: 15 ticks), past the
    # caller's 10 frames; TX ticks on while the call stops, past the end.
    assert 14 <= tap.end_slot <= tap.line_next
    caller, _ = tap.take()
    assert [slot for slot, _ in caller] == list(range(10))
    assert observer.totals["recording_dropped"] == 0
    assert session.alive_threads() == []


def test_twilios_stop_ends_the_recording_with_the_callers_last_frame():
    observer = Recording()
    session = make_session(time.perf_counter, observer, greeting_text="")
    session.start()
    try:
        for n in range(10):
            session.rx_timestamp(n * 20)
            session.rx_enqueue(frame(n))
        time.sleep(0.4)  # the stop is handled late: the line has ticked on past the audio
        session.stream_stopped()
    finally:
        session.stop("stop")
    tap = observer.tap
    assert tap.line_next >= 20
    assert tap.end_slot == 10  # where the caller's audio ended, not when the stop was handled
