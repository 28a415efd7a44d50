"""Property tests: any recognizer timing through the real Endpointer keeps the invariants.

Scripts and schedules come from tests/fakes/recognizer_timing.py; the caller's audio is the
synthetic voice of tests/helpers/speech.py on the script's word times, judged by the real
webrtcvad; time is a FakeClock moved event by event (frames every 20 ms, each followed by a tick
as on the RX thread, and the engine's responses at their times). Hypotheses are unnumbered, as
Google's are. Deterministic: hypothesis runs derandomized.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.media.audio import FRAME_MS, SILENCE_FRAME
from telephony.stt.base import Hypothesis
from telephony.turns.endpointing import Endpointer
from telephony.turns.transcript import TranscriptEvent
from tests.fakes.recognizer_timing import (
    Schedule,
    TimingParams,
    Utterance,
    layout,
    noisy_schedules,
    schedule,
    schedules,
)
from tests.helpers.clock import FakeClock
from tests.helpers.speech import VOICE

START_S = 1000.0
TAIL_MS = 3000  # silence played after the last response: every local timeout has passed
HANGOVER_MS = 180
ONSET_SLACK_MS = 40  # webrtcvad may take a frame or two to call speech speech


@dataclass
class Run:
    """What the endpointer published for one script and schedule, with the VAD's callbacks."""

    events: list[TranscriptEvent] = field(default_factory=list)
    starts: list[tuple[int, float]] = field(default_factory=list)  # (utterance, clock)
    ends: list[tuple[int, float]] = field(default_factory=list)


def replay(
    script: list[Utterance], sched: Schedule, noises: list[tuple[int, int]] | None = None
) -> Run:
    """Play the script's audio (and noises: voice with no word) and the schedule's responses."""
    clock = FakeClock(START_S)
    run = Run()
    ep = Endpointer(
        call_sid="CAprop",
        publish=run.events.append,
        clock=clock,
        wall_clock=clock,  # an event's `at` is the fake clock: when it was published
        hangover_ms=HANGOVER_MS,
        timeout_ms=320,
        debounce_ms=90,
        min_speech_ms=60,
        tick_ms=FRAME_MS,
        on_speech_start=lambda n: run.starts.append((n, clock())),
        on_speech_end=lambda n: run.ends.append((n, clock())),
    )
    words = [w for u in script for w in u.words]
    last_ms = max([words[-1].end_ms] + [r.at_ms for r in sched.responses]) + TAIL_MS
    # (time, order, action): a frame is judged once it has been heard (its end), before an
    # engine response at the same time (the engine hears the audio after the VAD does).
    timeline: list[tuple[int, int, object]] = []
    for k in range(last_ms // FRAME_MS):
        start = k * FRAME_MS
        voiced = any(w.start_ms <= start < w.end_ms for w in words) or any(
            a <= start < b for a, b in noises or ()
        )
        timeline.append((start + FRAME_MS, 0, VOICE if voiced else SILENCE_FRAME))
    for i, r in enumerate(sched.responses):
        timeline.append((r.at_ms, 1 + i, Hypothesis(r.text, is_final=r.is_final)))
    timeline.sort(key=lambda item: (item[0], item[1]))
    now_ms = 0
    for at_ms, _, what in timeline:
        clock.advance_ms(at_ms - now_ms)
        now_ms = at_ms
        if isinstance(what, Hypothesis):
            ep.hypothesis(what)
        else:
            ep.process_frame(what)
            ep.tick()
    return run


def check_invariants(
    script: list[Utterance], run: Run, noises: list[tuple[int, int]] | None = None
) -> None:
    """The invariants of telephony/turns/endpointing.py, and no word lost or doubled."""
    # The VAD hears every scripted utterance and noise, once (the pauses are long enough).
    spoken = sorted([(u.onset_ms, u) for u in script] + [(a, None) for a, _ in noises or ()])
    assert len(run.starts) == len(spoken), "test setup: the VAD must split the script as spoken"
    numbers = [n for (n, _), (_, u) in zip(run.starts, spoken, strict=True) if u is not None]
    # A noise (no word in it) gets no event at all: no FINAL, no partial.
    noise_numbers = {n for (n, _), (_, u) in zip(run.starts, spoken, strict=True) if u is None}
    assert not [e for e in run.events if e.utterance in noise_numbers], [
        (e.kind, e.utterance, e.text) for e in run.events
    ]
    ends = dict(run.ends)
    # 1. Exactly one FINAL per utterance, and nothing about utterances nobody spoke.
    finals = [e for e in run.events if e.kind == "final"]
    assert sorted(e.utterance for e in finals) == numbers, [
        (e.kind, e.utterance, e.text) for e in run.events
    ]
    assert {e.utterance for e in run.events} <= set(numbers)
    for n, utt in zip(numbers, script, strict=True):
        mine = [e for e in run.events if e.utterance == n]
        kinds = [e.kind for e in mine]
        # 5. After the FINAL, only REVISEDs (no partial, no second FINAL).
        first = kinds.index("final")
        assert set(kinds[:first]) <= {"partial"}
        assert set(kinds[first + 1 :]) <= {"revision"}
        # 2. A local FINAL only once the VAD has ended the utterance's speech.
        for e in mine:
            if e.kind == "final" and e.local:
                assert n in ends, "a local FINAL for speech the VAD never ended"
                assert e.at >= ends[n], "a local FINAL while the VAD heard speech"
                assert e.at >= START_S + (utt.end_ms + HANGOVER_MS) / 1000
        # 3. The utterance starts where the caller began (an early engine word opened no other).
        assert {e.offset_ms for e in mine} == {mine[0].offset_ms}
        assert 0 <= mine[0].offset_ms - utt.onset_ms <= ONSET_SLACK_MS
        # 4. A repeated text is not republished.
        partials = [e.text for e in mine if e.kind == "partial"]
        assert all(a != b for a, b in itertools.pairwise(partials))
    # 6. No word lost, none doubled: the last FINAL/REVISED text of each utterance, in order.
    last_text = {e.utterance: e.text for e in run.events if e.kind in ("final", "revision")}
    heard = [w for n in numbers for w in last_text[n].split()]
    assert heard == [w.text for u in script for w in u.words]


@settings(derandomize=True, max_examples=500, deadline=None)
@given(schedules())
def test_any_recognizer_timing_keeps_the_invariants(
    drawn: tuple[list[Utterance], Schedule],
) -> None:
    script, sched = drawn
    check_invariants(script, replay(script, sched))


@settings(derandomize=True, max_examples=300, deadline=None)
@given(noisy_schedules())
def test_noise_the_engine_ignores_gets_nothing_and_takes_no_word(
    drawn: tuple[list[Utterance], Schedule, list[tuple[int, int]]],
) -> None:
    script, sched, noises = drawn
    check_invariants(script, replay(script, sched, noises), noises)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_googles_default_timing_on_the_appointment_script(seed: int) -> None:
    """The four utterances most tests speak, at the model's default mix of behaviours."""
    script = layout(
        [
            ["שלום", "אני", "רוצה", "לקבוע", "תור"],
            ["לרופא", "מחר", "בבוקר"],
            ["איפה", "הסניף"],
            ["תודה"],
        ]
    )
    run = replay(script, schedule(script, random.Random(seed), TimingParams()))
    check_invariants(script, run)
    assert len([e for e in run.events if e.kind == "final"]) == 4


def test_the_checks_catch_a_second_final_and_a_doubled_word() -> None:
    """The property checks are not vacuous: a second FINAL or a doubled word fails them."""
    script = layout([["a", "b"]])
    run = replay(script, schedule(script, random.Random(1)))
    check_invariants(script, run)
    last = run.events[-1]
    doubled = replace(last, kind="revision", text=last.text + " b")
    second = replace(last, kind="final")
    for extra in (doubled, second):
        broken = Run(events=[*run.events, extra], starts=run.starts, ends=run.ends)
        with pytest.raises(AssertionError):
            check_invariants(script, broken)
