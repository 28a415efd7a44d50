"""The recognizer timing model: its distributions and the shape of the schedules it draws."""

from __future__ import annotations

import random
import statistics

from hypothesis import given, settings

from tests.fakes.recognizer_timing import (
    FINAL_MEDIAN_MS,
    FINAL_P95_MS,
    FINAL_P99_MS,
    Schedule,
    TimingParams,
    Utterance,
    final_delay_ms,
    first_interim_delay_ms,
    layout,
    schedule,
    schedules,
)

SCRIPT = layout([["a", "b", "c", "d"], ["e", "f"], ["g", "h", "i"], ["j"]])


def _quantile(values: list[int], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


def test_final_delay_matches_googles_published_figures() -> None:
    rng = random.Random(12)
    delays = [final_delay_ms(rng) for _ in range(20_000)]
    assert min(delays) >= 300
    assert max(delays) <= 1600
    assert abs(statistics.median(delays) - FINAL_MEDIAN_MS) <= 20
    assert abs(_quantile(delays, 0.95) - FINAL_P95_MS) <= 25
    assert abs(_quantile(delays, 0.99) - FINAL_P99_MS) <= 40


def test_first_interim_is_early_and_sometimes_before_a_60_ms_vad() -> None:
    rng = random.Random(3)
    params = TimingParams()
    delays = [first_interim_delay_ms(rng, params) for _ in range(5_000)]
    assert min(delays) >= 20
    assert max(delays) <= 600
    before_vad = sum(d <= 40 for d in delays) / len(delays)
    assert 0.25 <= before_vad <= 0.35  # p_very_early = 0.3
    assert statistics.median(delays) < 200  # weighted toward early


def test_same_seed_same_schedule() -> None:
    first = schedule(SCRIPT, random.Random(7))
    assert schedule(SCRIPT, random.Random(7)) == first
    assert schedule(SCRIPT, random.Random(8)) != first


def test_layout_places_words_as_speak_renders_them() -> None:
    placed = layout([["a", "b"], ["c"]], word_ms=200, gap_ms=60, pause_ms=900, lead_ms=300)
    assert [(w.text, w.start_ms, w.end_ms) for u in placed for w in u.words] == [
        ("a", 300, 500),
        ("b", 560, 760),
        ("c", 1660, 1860),
    ]


def test_a_polite_recognizer_gives_one_final_per_utterance_after_its_end() -> None:
    polite = TimingParams(p_final_after_next_onset=0.0, p_split=0.0, p_merge=0.0)
    sched = schedule(SCRIPT, random.Random(1), polite)
    finals = sched.finals()
    assert [f.utterances for f in finals] == [(0,), (1,), (2,), (3,)]
    for final, utt in zip(finals, SCRIPT, strict=True):
        assert final.text == utt.text
        assert 300 <= final.at_ms - utt.end_ms <= 1600


def test_every_behaviour_shows_up_over_many_seeds() -> None:
    """The rare cases the endpointer must survive do happen: splits, merges, late finals."""
    params = TimingParams(p_split=0.3, p_merge=0.3, p_final_after_next_onset=0.3, p_stream_end=0.3)
    seen: dict[str, int] = dict.fromkeys(
        ["split", "merge", "late", "repeat", "very_early", "bare_final", "full_final", "end"], 0
    )
    for seed in range(200):
        sched = schedule(SCRIPT, random.Random(seed), params)
        owners = [f.utterances for f in sched.finals()]
        seen["split"] += len(owners) != len(set(owners))
        seen["merge"] += any(len(o) == 2 for o in owners)
        seen["end"] += bool(sched.stream_ends_ms)
        for prev, r in zip(sched.responses, sched.responses[1:], strict=False):
            seen["repeat"] += not prev.is_final and not r.is_final and prev.text == r.text
            if prev.is_final and r.is_final:
                continue
            # A final that comes after the next utterance's onset.
            seen["late"] += (
                r.is_final
                and r.utterances[-1] + 1 < len(SCRIPT)
                and r.at_ms > SCRIPT[r.utterances[-1] + 1].onset_ms
            )
        for r in sched.responses:
            first = SCRIPT[r.utterances[0]]
            seen["very_early"] += not r.is_final and r.at_ms - first.onset_ms <= 40
            seen["bare_final"] += r.is_final and r.result_end_ms is None and not r.word_offsets
            seen["full_final"] += r.is_final and r.result_end_ms is not None and r.word_offsets
    assert all(count > 0 for count in seen.values()), seen


def _check_schedule(script: list[Utterance], sched: Schedule) -> None:
    times = [r.at_ms for r in sched.responses]
    assert times == sorted(times)
    # The engine's finals, in order, carry every word of the script once.
    assert [w for f in sched.finals() for w in f.words] == [w for u in script for w in u.words]
    for r in sched.responses:
        assert r.words, "an interim or final with no words"
        assert r.stability == 0.0 if r.is_final else 0.0 < r.stability < 1.0
    # Each final comes after the end of its words' speech by at least 300 ms.
    for f in sched.finals():
        assert f.at_ms - f.words[-1].end_ms >= 300
    # An interim's words are a prefix of its segment's words (text grows, never invents).
    segment: list = []
    for r in reversed(sched.responses):
        if r.is_final:
            segment = list(r.words)
        else:
            assert list(r.words) == segment[: len(r.words)]


@settings(derandomize=True, max_examples=200, deadline=None)
@given(schedules())
def test_any_schedule_is_ordered_causal_and_complete(
    drawn: tuple[list[Utterance], Schedule],
) -> None:
    _check_schedule(*drawn)
