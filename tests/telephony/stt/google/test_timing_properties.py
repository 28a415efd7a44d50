"""Property tests: the real Google session through the fake answering on random, seeded timing.

Whatever a recognizer's timing (early and repeated interims, late finals, finals with and without
times, split and merged finals, streams ended at any point) and whatever the engine does about it
(rotations, reconnects with replay), the call's finals carry every word once, in order.

Only the inputs are deterministic: hypothesis draws the same examples every run (derandomized),
and the fake answers on the audio it receives, not on a clock. The engine's gRPC threads, its
rotations (by age) and its backoffs run in real time, so how a given example's streams are cut
can differ from run to run; the property must hold for each way. A stall (a loaded machine) that
drops frames is reported as such, apart from lost words.
"""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from tests.fakes import recognizer_timing as rt
from tests.fakes.google_speech import (
    VOCABULARY,
    Collector,
    FakeSpeechServer,
    FrameVad,
    TimingPlan,
    play,
    render,
)
from tests.telephony.stt.google.helpers import open_session

SPEED = 8.0  # the caller's audio, faster than real time


def named(script: list[rt.Utterance]) -> list[rt.Utterance]:
    """Give the script's words (w1, w2, ...) words the fake speaks, each once."""
    words = iter(VOCABULARY)
    return [
        rt.Utterance(tuple(rt.Word(next(words), w.start_ms, w.end_ms) for w in u.words))
        for u in script
    ]


def run_call(
    plan: TimingPlan, *, rotate_s: float
) -> tuple[Collector, FakeSpeechServer, dict[str, int | str]]:
    with FakeSpeechServer(timing=plan) as server:
        sink = Collector()
        session = open_session(
            [server.host],
            sink,
            "CAtiming",
            rotate_s=rotate_s,
            backoff_s=0.02,
            backoff_max_s=0.1,
            max_failures=1000,  # streaming only: the property is about streams
        )
        play(session, render(list(plan.script)), speed=SPEED, vad=FrameVad())
        session.close(timeout=2.0)
    return sink, server, session.stats()


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    # No shrinking: each example is a call of a few seconds; a failure prints the plan it drew.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    script=rt.scripts(max_utterances=4, max_words=5),
    params=rt.timing_params(),
    seed=st.integers(0, 2**32 - 1),
    rotate_s=st.sampled_from([60.0, 0.6, 0.3]),  # none, or every ~5 s / ~2.4 s of audio
)
def test_no_word_lost_none_doubled_under_any_timing(
    script: list[rt.Utterance], params: rt.TimingParams, seed: int, rotate_s: float
) -> None:
    plan = TimingPlan.draw(named(script), seed, params)
    note(f"plan: {plan}")
    sink, server, stats = run_call(plan, rotate_s=rotate_s)
    note(f"finals: {[h.text for h in sink.finals()]}")
    note(f"events: {sink.events}")
    note(f"streams: {[(log.index, log.outcome, log.audio_ms) for log in server.streams]}")
    note(f"session: {stats}")
    # Every frame reached the engine: a full queue (the engine stalled) would lose words too,
    # and that is a different failure from a word the engine lost or doubled.
    assert stats["frames_dropped"] == 0, stats
    assert sink.final_words() == plan.words()
