"""When a network recognizer (Google StreamingRecognize) answers: a pure, seeded timing model.

Given what the caller says and when (a script of utterances, words with their spoken times) and a
`random.Random`, `schedule` returns the responses a recognizer on a real network may send, in time
order, plus the points where the server may end the stream. No I/O, no gRPC: the endpointer's
property tests replay a schedule on a fake clock, and the gRPC fake (tests/fakes/google_speech.py)
can answer by it.

The distributions (issue 12, and Google's published end-of-speech → final figures):

- first interim: 20-600 ms after speech onset, weighted early. With `p_very_early` it comes
  20-40 ms after onset, before a 60 ms VAD has confirmed speech; otherwise 40-600 ms,
  40 + 560·Beta(1.3, 4) (mode ~90 ms, median ~170 ms).
- interims: every 100-300 ms (uniform). With `p_repeat` an interim repeats the previous text
  (Google's stability does this); otherwise it carries the words spoken so far (a word counts
  once 20 ms of it was spoken). Interims stop at the final, or a uniform
  0-`max_interims_after_end_ms` after the end of speech, whichever comes first.
- final, end of speech → final: published median ~880 ms, p95 ~1,155 ms, p99 ~1,570 ms. Drawn by
  inverse transform: up to the 95th percentile a lognormal with median 880 ms and
  sigma = ln(1155 / 880) / 1.645 ≈ 0.165 (so its p95 is 1,155 ms); above it, the quantile is linear
  from 1,155 ms (q 0.95) to 1,570 ms (q 0.99) to 1,600 ms (q 1.0), the heavy tail a lognormal
  alone does not have. Clipped to [300, 1600] ms.
- with `p_final_after_next_onset` the final waits until the next utterance has begun: it comes
  20-400 ms after that onset (uniform), before any response about the next utterance.
- a final carries `result_end_time` with `p_end_time` and word offsets with `p_word_offsets`,
  independently (a final with neither is legal and must not be lost).
- with `p_split` the engine splits an utterance of two words or more into two finals at a
  word boundary (uniform); with `p_merge` it merges an utterance with the next into one final.
  Each response names the script utterances (0-based) it belongs to.
- with `p_stream_end` per utterance, the server ends the stream at a uniform time within
  that utterance's span (onset to its final); what that loses is the gRPC fake's business.

Responses are time-ordered and causal: nothing about an utterance comes before the previous
utterance's final (a later response is pushed to the earlier one's time, ties keep order).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

from hypothesis import strategies as st

FIRST_INTERIM_MS = (20, 600)
VERY_EARLY_INTERIM_MS = (20, 40)
INTERIM_EVERY_MS = (100, 300)
FINAL_AFTER_END_MS = (300, 1600)
# Google's own final, end of speech → final (published figures the model is fitted to).
FINAL_MEDIAN_MS = 880
FINAL_P95_MS = 1155
FINAL_P99_MS = 1570
_STANDARD_NORMAL = NormalDist()
FINAL_SIGMA = math.log(FINAL_P95_MS / FINAL_MEDIAN_MS) / _STANDARD_NORMAL.inv_cdf(0.95)
LATE_FINAL_AFTER_NEXT_ONSET_MS = (20, 400)
WORD_HEARD_MS = 20  # an interim carries a word once this much of it was spoken (one frame)


@dataclass(frozen=True, slots=True)
class Word:
    """A spoken word and when it was spoken (ms from the stream start)."""

    text: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class Utterance:
    """One utterance of the caller: its words in order (speech onset to end of speech)."""

    words: tuple[Word, ...]

    @property
    def onset_ms(self) -> int:
        return self.words[0].start_ms

    @property
    def end_ms(self) -> int:
        return self.words[-1].end_ms

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


@dataclass(frozen=True, slots=True)
class Response:
    """One StreamingRecognizeResponse the recognizer sends (one result in it)."""

    at_ms: int  # when it reaches the client, ms from the stream start
    is_final: bool
    words: tuple[Word, ...]  # the words of the text, with their spoken times
    stability: float  # Google's interim stability (0.0 on finals, as Google sends)
    result_end_ms: int | None  # result_end_time, when the engine sends one
    word_offsets: bool  # whether the words' times are sent (finals only)
    utterances: tuple[int, ...]  # script utterances (0-based) this result is about

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


@dataclass(frozen=True, slots=True)
class TimingParams:
    """How often each behaviour happens; the ranges themselves are the module's constants."""

    p_very_early: float = 0.3
    p_repeat: float = 0.5
    max_interims_after_end_ms: int = 600
    p_final_after_next_onset: float = 0.1
    p_end_time: float = 0.7
    p_word_offsets: float = 0.6
    p_split: float = 0.1
    p_merge: float = 0.1
    p_stream_end: float = 0.0


@dataclass(frozen=True, slots=True)
class Schedule:
    """What the recognizer does: its responses in time order, and where the server ends streams."""

    responses: tuple[Response, ...]
    stream_ends_ms: tuple[int, ...] = field(default=())

    def finals(self) -> list[Response]:
        return [r for r in self.responses if r.is_final]


def layout(
    utterances: Sequence[Sequence[str]],
    *,
    word_ms: int = 200,
    gap_ms: int = 60,
    pause_ms: int = 900,
    lead_ms: int = 300,
) -> list[Utterance]:
    """Place scripted words in time exactly as `google_speech.speak` renders them."""
    out = []
    t = lead_ms
    for words in utterances:
        placed = []
        for i, text in enumerate(words):
            if i:
                t += gap_ms
            placed.append(Word(text, t, t + word_ms))
            t += word_ms
        out.append(Utterance(tuple(placed)))
        t += pause_ms
    return out


def final_delay_ms(rng: random.Random) -> int:
    """End of speech → engine final, fitted to Google's published median / p95 / p99."""
    u = rng.random()
    if u <= 0.0:
        ms = 0.0  # the lognormal's 0th percentile; clipped to the range below
    elif u <= 0.95:
        ms = FINAL_MEDIAN_MS * math.exp(FINAL_SIGMA * _STANDARD_NORMAL.inv_cdf(u))
    elif u <= 0.99:
        ms = FINAL_P95_MS + (FINAL_P99_MS - FINAL_P95_MS) * (u - 0.95) / 0.04
    else:
        ms = FINAL_P99_MS + (FINAL_AFTER_END_MS[1] - FINAL_P99_MS) * (u - 0.99) / 0.01
    return round(min(max(ms, FINAL_AFTER_END_MS[0]), FINAL_AFTER_END_MS[1]))


def first_interim_delay_ms(rng: random.Random, params: TimingParams) -> int:
    """Speech onset → first interim: 20-600 ms, often before a 60 ms VAD confirms speech."""
    if rng.random() < params.p_very_early:
        return rng.randint(*VERY_EARLY_INTERIM_MS)
    return round(VERY_EARLY_INTERIM_MS[1] + 560 * rng.betavariate(1.3, 4))


def schedule(
    script: Sequence[Utterance],
    rng: random.Random,
    params: TimingParams | None = None,
) -> Schedule:
    """Draw the recognizer's responses to `script` (utterances in time order) from `rng`."""
    params = params or TimingParams()
    segments = _segments(script, rng, params)
    responses: list[Response] = []
    stream_ends: list[int] = []
    floor = 0  # causality: nothing comes before the previous segment's final
    for n, (words, owners) in enumerate(segments):
        onset, end = words[0].start_ms, words[-1].end_ms
        final_at = end + final_delay_ms(rng)
        nxt = segments[n + 1][0][0].start_ms if n + 1 < len(segments) else None
        if nxt is not None and rng.random() < params.p_final_after_next_onset:
            final_at = max(final_at, nxt + rng.randint(*LATE_FINAL_AFTER_NEXT_ONSET_MS))
        stop_interims = min(final_at, end + rng.randint(0, params.max_interims_after_end_ms))

        t = onset + first_interim_delay_ms(rng, params)
        shown: tuple[Word, ...] = ()
        while t < stop_interims or not shown:  # at least one interim per segment
            spoken = tuple(w for w in words if w.start_ms + WORD_HEARD_MS <= t) or words[:1]
            repeat = bool(shown) and rng.random() < params.p_repeat
            text = shown if repeat else spoken
            stability = round(
                rng.uniform(0.8, 0.95) if text == shown else rng.uniform(0.01, 0.1), 2
            )
            at = max(t, floor)
            responses.append(Response(at, False, text, stability, None, False, owners))
            shown = text
            t += rng.randint(*INTERIM_EVERY_MS)
        final_at = max(final_at, responses[-1].at_ms, floor)
        result_end = end if rng.random() < params.p_end_time else None
        offsets = rng.random() < params.p_word_offsets
        responses.append(Response(final_at, True, words, 0.0, result_end, offsets, owners))
        floor = final_at
        if rng.random() < params.p_stream_end:
            stream_ends.append(rng.randint(onset, final_at))
    return Schedule(tuple(responses), tuple(sorted(stream_ends)))


def _segments(
    script: Sequence[Utterance], rng: random.Random, params: TimingParams
) -> list[tuple[tuple[Word, ...], tuple[int, ...]]]:
    """Cut the script as the engine hears it: (words, script utterances) per engine final."""
    out: list[tuple[tuple[Word, ...], tuple[int, ...]]] = []
    i = 0
    while i < len(script):
        words = script[i].words
        if i + 1 < len(script) and rng.random() < params.p_merge:
            out.append((words + script[i + 1].words, (i, i + 1)))
            i += 2
            continue
        if len(words) >= 2 and rng.random() < params.p_split:
            cut = rng.randint(1, len(words) - 1)
            out.append((words[:cut], (i,)))
            out.append((words[cut:], (i,)))
        else:
            out.append((words, (i,)))
        i += 1
    return out


# --- hypothesis strategies ----------------------------------------------------------------------


def timing_params() -> st.SearchStrategy[TimingParams]:
    """Any mix of the behaviours, from a polite recognizer to one that does all of them often."""
    chance = st.floats(0.0, 1.0)
    return st.builds(
        TimingParams,
        p_very_early=chance,
        p_repeat=st.floats(0.0, 0.9),
        max_interims_after_end_ms=st.integers(0, 1000),
        p_final_after_next_onset=chance,
        p_end_time=chance,
        p_word_offsets=chance,
        p_split=st.floats(0.0, 0.5),
        p_merge=st.floats(0.0, 0.5),
        p_stream_end=st.floats(0.0, 0.5),
    )


@st.composite
def scripts(
    draw: st.DrawFn,
    *,
    max_utterances: int = 4,
    max_words: int = 5,
    min_pause_ms: int = 400,
) -> list[Utterance]:
    """Utterances of 1-`max_words` words (120-400 ms each, 40-120 ms apart), paused between.

    Words are named w1, w2, ... across the script, so a word lost or doubled shows.

    The pause is at least `min_pause_ms` so a local VAD can tell the utterances apart (it needs
    its hangover of silence); within an utterance, a gap stays under a 180 ms hangover.
    """
    t = draw(st.integers(5, 30)) * 20  # on the 20 ms frame grid, as are all the times below
    count = draw(st.integers(1, max_utterances))
    out = []
    for _ in range(count):
        words = []
        for i in range(draw(st.integers(1, max_words))):
            if i:
                t += draw(st.integers(2, 6)) * 20
            length = draw(st.integers(6, 20)) * 20
            words.append(Word(f"w{sum(len(u.words) for u in out) + i + 1}", t, t + length))
            t += length
        out.append(Utterance(tuple(words)))
        t += draw(st.integers(min_pause_ms // 20, 3000 // 20)) * 20
    return out


@st.composite
def schedules(
    draw: st.DrawFn, *, script: st.SearchStrategy[list[Utterance]] | None = None
) -> tuple[list[Utterance], Schedule]:
    """A script and a schedule drawn for it (random params, seeded Random)."""
    utterances = draw(script if script is not None else scripts())
    params = draw(timing_params())
    seed = draw(st.integers(0, 2**32 - 1))
    return utterances, schedule(utterances, random.Random(seed), params)


NOISE_FRAMES = (4, 6)  # a cough or a click: 80-120 ms the VAD confirms (60 ms), no word in it
# Silence either side of a noise, so the VAD tells it apart: a 180 ms hangover, and webrtcvad
# may call speech for ~120 ms after voice ends.
NOISE_CLEARANCE_MS = 400


@st.composite
def noisy_schedules(
    draw: st.DrawFn,
) -> tuple[list[Utterance], Schedule, list[tuple[int, int]]]:
    """A schedule as `schedules` draws it, plus noise bursts (start_ms, end_ms): one in each pause
    where it fits.

    The recognizer says nothing about a noise. A noise goes only where the engine was free to
    speak of it: every response about earlier utterances came before the noise began. (While a
    result is open, a noise looks like the next utterance of a merge, and behind a busy engine
    like an utterance whose first word is still to come: an endpointer can't tell them apart,
    and it takes them for speech.)
    """
    utterances, sched = draw(schedules(script=scripts(min_pause_ms=1000)))
    noises = []
    for i, utt in enumerate(utterances):
        if i == 0:
            continue
        begin = utterances[i - 1].end_ms + NOISE_CLEARANCE_MS
        length = draw(st.integers(*NOISE_FRAMES)) * 20
        latest = utt.onset_ms - NOISE_CLEARANCE_MS - length
        if latest < begin:
            continue
        start = begin + draw(st.integers(0, (latest - begin) // 20)) * 20
        earlier = [r.at_ms for r in sched.responses if min(r.utterances) < i]
        if max(earlier, default=0) < start:
            noises.append((start, start + length))
    return utterances, sched, noises
