"""Endpointer: real webrtcvad on synthetic and espeak frames, time driven by a fake clock."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from pytest_django.fixtures import Settings

from telephony.media.audio import SILENCE_FRAME, split_frames
from telephony.stt.base import Hypothesis
from telephony.turns.endpointing import Endpointer
from telephony.turns.transcript import TranscriptEvent
from tests.helpers.clock import FakeClock
from tests.helpers.speech import VOICE

SILENCE = SILENCE_FRAME


class Line:
    """One endpointer with a fake clock, recording its events and callbacks."""

    def __init__(self, **kwargs: object) -> None:
        self.clock = FakeClock(1000.0)
        self.events: list[TranscriptEvent] = []
        self.starts: list[tuple[int, int]] = []  # (utterance, position_ms when called)
        self.ends: list[tuple[int, int, float]] = []  # (utterance, position_ms, clock)
        self.speech_clock: list[float] = []  # clock at every frame the VAD called speech
        self.ep = Endpointer(
            call_sid="CAtest",
            publish=self.events.append,
            clock=self.clock,
            wall_clock=lambda: 1.7e9,
            on_speech_start=lambda n: self.starts.append((n, self.ep.position_ms)),
            on_speech_end=lambda n: self.ends.append((n, self.ep.position_ms, self.clock())),
            **kwargs,  # type: ignore[arg-type]
        )

    def feed(self, frames: list[bytes]) -> list[bool]:
        """Play frames in real time: 20 ms of clock per frame, a tick after each."""
        flags = []
        for frame in frames:
            self.clock.advance_ms(20)
            is_speech = self.ep.process_frame(frame)
            if is_speech:
                self.speech_clock.append(self.clock())
            flags.append(is_speech)
            self.ep.tick()
        return flags

    def wait(self, ms: float) -> None:
        """Let clock time pass with ticks but no audio (the tick needs no frame)."""
        self.clock.advance_ms(ms)
        self.ep.tick()

    def say(self, text: str, *, final: bool = False, utterance: int | None = None) -> None:
        self.ep.hypothesis(Hypothesis(text, is_final=final, utterance=utterance))

    def kinds(self) -> list[tuple[str, str]]:
        return [(e.kind, e.text) for e in self.events]

    def speak_and_stop(self, frames: int = 20) -> None:
        """Open an utterance, then play silence until the VAD ends it."""
        self.feed([SILENCE] * 5 + [VOICE] * frames)
        assert self.ep.speaking
        while self.ep.speaking:
            self.feed([SILENCE])


def _run_length(flags: list[bool]) -> int:
    """Length of the first run of True."""
    start = flags.index(True)
    return next((i for i, f in enumerate(flags[start:]) if not f), len(flags) - start)


# --- VAD: min speech, hangover ----------------------------------------------------------------


def test_speech_opens_on_the_frame_that_completes_min_speech() -> None:
    line = Line(min_speech_ms=60)
    flags = line.feed([SILENCE] * 10)
    assert not any(flags)
    flags = line.feed([VOICE, VOICE])
    assert flags == [True, True]
    assert line.starts == []  # 40 ms of speech: not yet
    assert line.feed([VOICE]) == [True]
    # 60 ms: utterance 1 opens, starting at the first speech frame (10 frames in).
    assert line.starts == [(1, 13 * 20)]
    line.say("hi")
    assert line.events[0].utterance == 1
    assert line.events[0].offset_ms == 200


@pytest.mark.parametrize("extra_ms", [0, 20])
def test_a_speech_run_shorter_than_min_speech_opens_nothing(extra_ms: int) -> None:
    burst = [SILENCE] * 5 + [VOICE] + [SILENCE] * 20
    # webrtcvad carries its own hangover: one voiced frame reads as a run of several.
    probe = Line(min_speech_ms=10_000)
    run_ms = _run_length(probe.feed(burst)) * 20
    assert run_ms >= 40

    line = Line(min_speech_ms=run_ms + extra_ms)
    line.feed(burst)
    assert len(line.starts) == (1 if extra_ms == 0 else 0)


@pytest.mark.parametrize("hangover_ms", [160, 180, 200])
def test_speech_ends_after_exactly_hangover_of_non_speech(hangover_ms: int) -> None:
    line = Line(hangover_ms=hangover_ms)
    line.feed([SILENCE] * 5 + [VOICE] * 20)
    flags = line.feed([SILENCE] * 30)
    first_quiet = flags.index(False)
    silent_frames = hangover_ms // 20
    # It ends on the frame that completes the hangover, counted from the first quiet frame.
    assert [(n, pos) for n, pos, _ in line.ends] == [(1, (25 + first_quiet + silent_frames) * 20)]
    assert not line.ep.speaking


def test_hangover_boundary_frame_by_frame() -> None:
    line = Line(hangover_ms=180)
    line.feed([SILENCE] * 5 + [VOICE] * 20)
    while line.feed([SILENCE]) == [True]:
        pass  # webrtcvad's own tail
    for _ in range(7):  # 8 quiet frames = 160 ms
        line.feed([SILENCE])
    assert line.ep.speaking
    assert line.ends == []
    line.feed([SILENCE])  # the 9th: 180 ms
    assert not line.ep.speaking
    assert len(line.ends) == 1


def test_a_gap_shorter_than_the_hangover_keeps_one_utterance() -> None:
    line = Line()
    flags = line.feed([SILENCE] * 5 + [VOICE] * 20 + [SILENCE] * 10 + [VOICE] * 20)
    gap = flags[25:45]
    assert False in gap  # the VAD did hear the pause
    assert len(line.starts) == 1
    assert line.ends == []


def test_utterances_are_numbered_in_order() -> None:
    line = Line()
    line.speak_and_stop()
    line.speak_and_stop()
    assert [n for n, _ in line.starts] == [1, 2]
    assert [n for n, _, _ in line.ends] == [1, 2]
    assert line.ep.utterance == 2


def test_espeak_word_opens_and_closes_one_utterance() -> None:
    from telephony.tts.espeak import EspeakTts

    word = split_frames(EspeakTts().synthesize("hello there"))
    line = Line()
    flags = line.feed([SILENCE] * 25 + word + [SILENCE] * 25)
    assert len(line.starts) == 1
    assert len(line.ends) == 1
    first_speech = flags.index(True)
    assert 25 <= first_speech < 25 + len(word)
    line.say("hello there")
    assert line.events[0].offset_ms == first_speech * 20


def test_silence_alone_opens_nothing() -> None:
    line = Line()
    assert not any(line.feed([SILENCE] * 200))
    assert line.starts == []
    assert line.events == []
    assert line.ep.position_ms == 4000


def test_a_frame_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError, match="160-byte"):
        Line().ep.process_frame(b"\xff" * 80)


# --- partial debounce -------------------------------------------------------------------------


def test_partials_are_debounced_at_exactly_debounce_ms() -> None:
    line = Line(debounce_ms=90)
    line.feed([SILENCE] * 5 + [VOICE] * 5)
    line.say("I")
    assert line.kinds() == [("partial", "I")]
    line.clock.advance_ms(30)
    line.say("I would")
    line.clock.advance_ms(59)  # 89 ms since the last partial
    line.say("I would like")
    line.ep.tick()
    assert line.kinds() == [("partial", "I")]  # held, and the latest text replaced it
    line.clock.advance_ms(1)  # 90 ms
    line.ep.tick()
    assert line.kinds() == [("partial", "I"), ("partial", "I would like")]
    line.ep.tick()
    assert len(line.events) == 2


def test_a_partial_after_the_window_goes_out_at_once() -> None:
    line = Line(debounce_ms=90)
    line.feed([SILENCE] * 5 + [VOICE] * 5)
    line.say("one")
    line.clock.advance_ms(90)
    line.say("one two")
    assert line.kinds() == [("partial", "one"), ("partial", "one two")]


def test_identical_and_empty_partials_are_not_published() -> None:
    line = Line()
    line.feed([SILENCE] * 5 + [VOICE] * 5)
    line.say("hello")
    line.wait(200)
    line.say("hello")
    line.say("   ")
    line.say("")
    line.wait(200)
    assert line.kinds() == [("partial", "hello")]


def test_a_held_partial_that_returns_to_the_shown_text_is_dropped() -> None:
    line = Line()
    line.feed([SILENCE] * 5 + [VOICE] * 5)
    line.say("hello")
    line.clock.advance_ms(10)
    line.say("hello there")  # held
    line.say("hello")  # latest wins, and it is already shown
    line.wait(200)
    assert line.kinds() == [("partial", "hello")]


# --- finals, local finals, revisions ----------------------------------------------------------


def test_engine_final_is_published_with_latency_from_the_last_speech_frame() -> None:
    line = Line()
    line.speak_and_stop()
    last_speech = line.speech_clock[-1]
    line.wait(100)
    line.say("check my order", final=True)
    (event,) = line.events
    assert (event.kind, event.text, event.local) == ("final", "check my order", False)
    assert event.latency_ms == pytest.approx((line.clock() - last_speech) * 1000, abs=0.1)
    assert event.at == 1.7e9


def test_local_final_at_exactly_timeout_after_speech_ended() -> None:
    line = Line(timeout_ms=320, hangover_ms=180)
    line.feed([SILENCE] * 5 + [VOICE] * 20)
    line.say("check my")
    line.say("check my order")  # held: within the debounce window
    while line.ep.speaking:
        line.feed([SILENCE])
    ended_at = line.ends[0][2]
    line.clock.now = ended_at + 0.319
    line.ep.tick()
    assert [k for k, _ in line.kinds()] == ["partial", "partial"]
    line.clock.now = ended_at + 0.320
    line.ep.tick()
    final = line.events[-1]
    assert (final.kind, final.text, final.local) == ("final", "check my order", True)
    # From the last speech frame: the hangover (and webrtcvad's tail) plus the timeout.
    expected = (line.clock() - line.speech_clock[-1]) * 1000
    assert final.latency_ms == pytest.approx(expected, abs=0.1)
    assert final.latency_ms >= 180 + 320 - 0.1
    line.wait(1000)
    assert len(line.events) == 3


def test_on_the_rx_cadence_the_local_final_comes_at_the_tick_nearest_its_due_time() -> None:
    # The RX thread's ticks are 20 ms apart and their clock reads jitter: a tick that lands a
    # hair before the due time must not push the FINAL a whole tick (20 ms) late.
    line = Line(timeout_ms=320, hangover_ms=180, tick_ms=20)
    line.speak_and_stop()
    line.say("check my order")
    ended_at = line.ends[0][2]
    line.clock.now = ended_at + 0.309  # the tick before: 11 ms early, the next one is nearer
    line.ep.tick()
    assert [k for k, _ in line.kinds()] == ["partial"]
    line.clock.now = ended_at + 0.3195  # the tick on time, its clock read 0.5 ms early
    line.ep.tick()
    final = line.events[-1]
    assert (final.kind, final.local) == ("final", True)


def test_a_first_partial_after_the_timeout_is_the_final_at_once() -> None:
    # The engine had nothing to say by the due time: its first words are the FINAL when they
    # come, not a tick later, and no PARTIAL is published for them.
    line = Line(timeout_ms=320, hangover_ms=180, tick_ms=20)
    line.speak_and_stop()
    ended_at = line.ends[0][2]
    line.clock.now = ended_at + 0.400
    line.ep.tick()
    assert line.events == []
    line.clock.now = ended_at + 0.4071
    line.say("late words")
    (final,) = line.events
    assert (final.kind, final.text, final.local) == ("final", "late words", True)
    assert final.latency_ms == pytest.approx((line.clock() - line.speech_clock[-1]) * 1000, abs=0.1)
    # A partial arriving just before the due time is only a partial (no half-tick allowance).
    early = Line(timeout_ms=320, hangover_ms=180, tick_ms=20)
    early.speak_and_stop()
    early.clock.now = early.ends[0][2] + 0.315
    early.say("just in time")
    assert [k for k, _ in early.kinds()] == ["partial"]


def test_engine_final_before_the_timeout_prevents_a_local_final() -> None:
    line = Line()
    line.feed([SILENCE] * 5 + [VOICE] * 20)
    line.say("check")
    while line.ep.speaking:
        line.feed([SILENCE])
    line.wait(300)
    line.say("check my order", final=True)
    line.wait(1000)
    line.say("late partial", utterance=1)  # e.g. a decode that finished after the final
    line.wait(1000)
    assert line.kinds() == [("partial", "check"), ("final", "check my order")]


def test_engine_final_after_a_local_final_revises_it_once() -> None:
    line = Line()
    line.feed([SILENCE] * 5 + [VOICE] * 20)
    line.say("check my odor")
    while line.ep.speaking:
        line.feed([SILENCE])
    line.wait(400)
    assert line.kinds()[-1] == ("final", "check my odor")
    line.say("check my order", final=True)
    line.say("check my order", final=True, utterance=1)  # a repeat changes nothing
    assert line.kinds() == [
        ("partial", "check my odor"),
        ("final", "check my odor"),
        ("revision", "check my order"),
    ]
    assert all(e.utterance == 1 for e in line.events)
    assert line.events[-1].latency_ms is not None


def test_engine_final_equal_to_the_local_final_is_not_a_revision() -> None:
    line = Line()
    line.feed([SILENCE] * 5 + [VOICE] * 20)
    line.say("yes please")
    while line.ep.speaking:
        line.feed([SILENCE])
    line.wait(320)
    line.say("yes please", final=True)
    assert line.kinds() == [("partial", "yes please"), ("final", "yes please")]
    assert line.events[-1].local


def test_without_any_partial_the_final_waits_for_the_engine() -> None:
    line = Line()
    line.speak_and_stop()
    line.wait(5000)
    assert line.events == []
    line.say("slow engine", final=True)
    (event,) = line.events
    assert (event.kind, event.local) == ("final", False)
    assert event.latency_ms is not None
    assert event.latency_ms > 5000


def test_an_empty_engine_final_publishes_nothing() -> None:
    line = Line()
    line.feed([SILENCE] * 5 + [VOICE] * 20)
    line.say("uh")
    while line.ep.speaking:
        line.feed([SILENCE])
    line.say("", final=True)
    line.wait(1000)
    line.ep.close()
    # The engine's final word was "nothing": the guess is not promoted to a FINAL.
    assert line.kinds() == [("partial", "uh")]


def test_numbered_hypotheses_go_to_their_utterance() -> None:
    line = Line()
    line.speak_and_stop()
    first_offset = line.starts[0][1] - 60  # opened 60 ms after its first speech frame
    line.feed([SILENCE] * 5 + [VOICE] * 10)
    assert line.ep.utterance == 2
    line.say("first", final=True, utterance=1)
    line.say("second", utterance=2)
    assert [(e.kind, e.utterance) for e in line.events] == [("final", 1), ("partial", 2)]
    assert line.events[0].offset_ms == first_offset
    assert line.events[1].offset_ms > first_offset


# --- hypotheses the VAD did not hear ----------------------------------------------------------


def test_a_hypothesis_before_any_speech_opens_an_utterance() -> None:
    line = Line(timeout_ms=320)
    line.feed([SILENCE] * 50)
    line.say("quiet voice")
    (event,) = line.events
    assert (event.kind, event.utterance, event.offset_ms) == ("partial", 1, 1000)
    assert line.starts == []  # the VAD's callbacks are for the VAD's speech only
    # Its timeout runs from the engine's latest word.
    line.wait(200)
    line.say("quiet voice here")
    line.wait(319)
    assert [e.kind for e in line.events] == ["partial", "partial"]
    line.wait(1)
    assert (line.events[-1].kind, line.events[-1].local) == ("final", True)
    assert line.events[-1].latency_ms == pytest.approx(320, abs=0.1)
    # The VAD's next utterance takes the next number.
    line.feed([VOICE] * 5)
    assert line.starts[0][0] == 2


def test_empty_hypotheses_open_no_utterance() -> None:
    line = Line()
    line.say("")
    line.say(" ", final=True)
    line.say("", utterance=4)
    line.say("hello")
    assert [(e.kind, e.utterance) for e in line.events] == [("partial", 1)]


def test_an_engine_result_after_its_final_on_the_same_speech_revises_it() -> None:
    # Invariant 6 (a split): the VAD still hears the same utterance, so the engine's second
    # result is more of it, not a new utterance; its final joins the first (a REVISED).
    line = Line()
    line.feed([SILENCE] * 5 + [VOICE] * 40)
    line.say("first sentence", final=True)
    line.clock.advance_ms(100)
    line.say("second")
    line.feed([VOICE] * 10)
    while line.ep.speaking:
        line.feed([SILENCE])
    line.say("second sentence", final=True)
    assert [(e.kind, e.text, e.utterance) for e in line.events] == [
        ("final", "first sentence", 1),
        ("revision", "first sentence second sentence", 1),
    ]
    line.speak_and_stop()
    assert line.starts[-1][0] == 2


def test_engine_text_long_after_its_last_final_without_speech_is_a_new_utterance() -> None:
    line = Line(engine_lag_ms=2000)
    line.speak_and_stop()
    line.say("first sentence", final=True)
    line.wait(2001)  # past any engine lag, and the VAD heard nothing since
    line.say("quiet words")
    assert [(e.kind, e.text, e.utterance) for e in line.events] == [
        ("final", "first sentence", 1),
        ("partial", "quiet words", 2),
    ]


# --- close, failures, threads -----------------------------------------------------------------


def test_close_finalizes_a_pending_partial_and_then_ignores_everything() -> None:
    line = Line()
    line.feed([SILENCE] * 5 + [VOICE] * 20)
    line.say("goodbye")
    line.ep.close()
    assert line.kinds() == [("partial", "goodbye"), ("final", "goodbye")]
    assert line.events[-1].local
    line.say("goodbye now", final=True)
    line.say("more")
    line.ep.close()
    assert len(line.events) == 2


def test_close_without_partials_publishes_nothing() -> None:
    line = Line()
    line.feed([SILENCE] * 5 + [VOICE] * 20)
    line.ep.close()
    assert line.events == []


def test_a_failing_subscriber_does_not_break_the_endpointer() -> None:
    calls = []

    def publish(event: TranscriptEvent) -> None:
        calls.append(event)
        raise RuntimeError("recorder down")

    clock = FakeClock(1000.0)
    ep = Endpointer(call_sid="CA1", publish=publish, clock=clock)
    ep.hypothesis(Hypothesis("one", is_final=True))
    ep.hypothesis(Hypothesis("two", is_final=True))
    assert [e.text for e in calls] == ["one", "two"]


def test_from_settings_reads_the_stt_parameters(settings: Settings) -> None:
    settings.PARTIAL_DEBOUNCE_MS = 70
    settings.VAD_HANGOVER_MS = 240
    settings.TIMEOUT_MS = 400
    settings.VAD_MIN_SPEECH_MS = 100
    ep = Endpointer.from_settings(call_sid="CA1", publish=lambda e: None)
    assert (ep.debounce_ms, ep.hangover_ms, ep.timeout_ms, ep.min_speech_ms) == (70, 240, 400, 100)
    assert Endpointer.from_settings(call_sid="CA1", publish=print, timeout_ms=1).timeout_ms == 1


def test_hypotheses_from_other_threads_keep_the_rules() -> None:
    events: list[TranscriptEvent] = []
    ep = Endpointer(call_sid="CA1", publish=events.append, wall_clock=time.perf_counter)
    stop = threading.Event()

    def engine(name: str) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            ep.hypothesis(Hypothesis(f"{name} {i}", is_final=False, utterance=1))
        ep.hypothesis(Hypothesis(f"{name} final", is_final=True, utterance=1))

    threads = [threading.Thread(target=engine, args=(f"e{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    deadline = time.perf_counter() + 0.3
    while time.perf_counter() < deadline:
        ep.process_frame(VOICE)
        ep.tick()
    stop.set()
    for thread in threads:
        thread.join(5)
    partials = [e.at for e in events if e.kind == "partial"]
    assert len(partials) >= 2
    # `at` is read a few microseconds after the debounce's clock reading: allow 1 ms of jitter.
    assert min(b - a for a, b in itertools.pairwise(partials)) >= 0.089
    kinds = [e.kind for e in events]
    assert kinds.count("final") == 1
    # Partials stop at the final; the other engines' finals can only revise it.
    assert set(kinds[kinds.index("final") + 1 :]) <= {"revision"}
