"""The reply hook: when a caller's turn is answered, and what a failing hook does (no threads)."""

from concurrent.futures import Executor, Future

import pytest

from telephony.turns.replies import Replier, Turn, echo
from telephony.turns.transcript import TranscriptEvent
from tests.helpers.clock import FakeClock


class Inline(Executor):
    def submit(self, fn, /, *args, **kwargs):
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def final(text: str, utterance: int, *, local: bool, kind: str = "final") -> TranscriptEvent:
    return TranscriptEvent("CA1", kind, text, utterance, 0, 0.0, 500.0, local)


@pytest.fixture
def replier():
    clock = FakeClock(50.0)
    said: list[str] = []
    turns: list[Turn] = []

    def hook(turn: Turn) -> str | None:
        turns.append(turn)
        return echo(turn)

    r = Replier(
        call_sid="CA1",
        hook=hook,
        say=said.append,
        on_error=said.append,
        settle_ms=2000,
        clock=clock,
        executor=Inline(),
    )
    return r, clock, said, turns


def test_an_engine_final_is_answered_at_once(replier):
    r, _, said, turns = replier
    r.transcript(final("where is my order", 1, local=False))
    assert said == ["You said: where is my order"]
    assert turns[0].finals == ("where is my order",)


def test_a_local_final_waits_for_its_revision_and_is_answered_once(replier):
    r, clock, said, turns = replier
    r.transcript(final("where is my", 1, local=True))
    clock.now += 1.999
    r.tick()
    assert said == []
    r.transcript(final("where is my order", 1, local=True, kind="revision"))
    assert said == ["You said: where is my order"]
    assert turns[0].finals == ("where is my order",)
    clock.now += 5
    r.tick()
    assert len(said) == 1


def test_a_local_final_without_revision_is_answered_when_it_settles(replier):
    r, clock, said, _ = replier
    r.transcript(final("where is my", 1, local=True))
    clock.now += 2.0
    r.tick()
    assert said == ["You said: where is my"]


def test_digits_accumulate_and_reach_the_hook(replier):
    r, _, said, turns = replier
    r.dtmf("4")
    r.dtmf("2")
    assert said == ["You pressed 4.", "You pressed 2."]
    assert turns[-1].digits == "42"


def test_a_failing_hook_is_reported_not_raised():
    errors: list[str] = []

    def broken(turn: Turn) -> str:
        raise ValueError("boom")

    r = Replier(
        call_sid="CA1", hook=broken, say=errors.append, on_error=errors.append, executor=Inline()
    )
    r.dtmf("1")
    assert errors == ["reply hook failed: boom"]
