"""Endpointing shared by every STT engine: local VAD, partial debounce, local final on timeout.

Invariants (each has a test in tests/telephony/turns/test_endpointing_invariants.py, and the
property tests in test_endpointing_properties.py check them under random recognizer timings):

1. Exactly one FINAL per utterance. An utterance is speech the local VAD confirmed (or, when the
   VAD confirms nothing, words the engine heard). Whatever the engine does after it, a FINAL is
   followed only by REVISEDs for the same utterance.
2. Never a local FINAL while the VAD still hears speech of that utterance: the timeout runs from
   the end of speech (VAD hangover). For an utterance opened on the engine's word, any VAD speech
   frame, confirmed or not (while the VAD speaks of another utterance too), and any engine
   hypothesis restart the timeout.
3. An engine hypothesis that arrives before the VAD confirms speech belongs to the utterance the
   VAD then confirms, not to a new one: an utterance opened on the engine's word is adopted by
   the VAD (same number, its offset moved to where the speech began); a result taken as the
   last utterance's continuation that began with the speech (two frames of slack: webrtcvad may
   flag speech a frame or two late; `LATE_ONSET_MS` when the word came after the last
   utterance's speech was over, hangover included: an unvoiced onset (s, sh, t) is flagged
   ~80 ms late) moves to the new utterance; and words a result adds while the VAD hears speech
   it has not confirmed yet, or that came with it (the same slack), wait for it, except
   words already out in the owner's local FINAL: those stay the owner's (were the new utterance
   to take them too, only the engine's REVISED would take them back, and when its final never
   comes, a hang-up, they would stay doubled); the new utterance gets the words past them.
4. A repeated identical interim is not republished, but it is a sign of speech: for an
   utterance opened on the engine's word it restarts the local timeout. (For an utterance the
   VAD heard, the VAD alone says when speech is over: Google repeats interims until its final.)
5. An engine final that comes after a FINAL (local or engine) is a REVISED when its text
   differs, never a second FINAL; equal text publishes nothing.
6. The engine's results (unnumbered hypotheses, between two of its finals) are matched to
   utterances in order. A split: a second result while the VAD still hears the utterance, or
   within `engine_lag_ms` of its end with no newer speech, continues it: the utterance's text
   becomes the engine's finals joined (a REVISED). A merge: once the VAD has opened a later
   utterance, the words of the open result past those its owner held then belong to the later
   one (its partials, and its FINAL when the result's final comes; the owner is REVISED if the
   engine rewrote its part). So no word is lost or doubled across the call; where the engine
   merged, split or lagged, the boundary between two utterances falls where the engine's words
   stood when the VAD heard the next one begin.

Other rules:

- `partial`: at most one per `debounce_ms`, the latest text wins, repeats and empty text dropped.
- `final`: the engine's final for the utterance, or, when the engine stays quiet for `timeout_ms`
  after speech is over, the latest partial marked `local=True` (at the tick nearest that time,
  or when the first partial comes, if none had by then). Never empty.
- `revision`: an engine final that arrives after the FINAL and says something else.
- An engine final without words closes its result: no FINAL, and no local final from a partial.

Speech boundaries are counted in audio (frames of 20 ms), so a burst of queued frames is judged
as the caller spoke it; publishing (debounce, timeout, latency) runs on the injected clock.

Attribution. A hypothesis goes to `h.utterance` when the engine numbers it (Whisper does, with
the numbers `on_speech_start` handed out; its final replaces the utterance's text). Unnumbered
hypotheses (Google's) form results, each closed by a final, and a new result goes to: the oldest
utterance after the engine's last one, skipping one that got no word once newer speech has begun
(a later utterance, or speech the VAD hears and has not confirmed yet) if the engine was free to
speak of it (no result open since before it ended) or it ended more than `engine_lag_ms` ago:
noise the engine ignored, whose FINAL would be the newer speech's first word, out at once and
at the noise's offset while the caller speaks (a noise gets no FINAL: it had no words); else
the engine's last one, while the VAD still hears it or within `engine_lag_ms` of its end (a
split); else an utterance opened on the engine's word at the current audio position. While the
VAD hears no speech, each hypothesis of such an utterance counts as its latest sign of speech,
so its local timeout runs from the engine's last word and its latency from the engine's last
hypothesis.

Threading: one lock guards the state; `publish` is called with it held so events leave in order,
and must be quick (enqueue, log) and never call back into the endpointer. The speech callbacks
run without the lock, on the thread that called `process_frame`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import webrtcvad

from telephony.media.audio import FRAME_BYTES, FRAME_MS, SAMPLE_RATE, ulaw_to_pcm16
from telephony.stt.base import Hypothesis
from telephony.turns.transcript import TranscriptEvent, TranscriptKind

log = logging.getLogger(__name__)

# Finalized utterances are kept this long (in utterances) so a late engine final can revise them.
KEEP_UTTERANCES = 16
CLOCK_EPSILON_S = 1e-6
# How long after the end of speech an engine may still be talking about it: Google's final
# comes at most ~1.6 s after the end of speech (published p99 ~1,570 ms).
ENGINE_LAG_MS = 2000
# A result whose first word came this soon before the VAD's speech run began is about that run:
# the VAD may flag a frame or two late.
ONSET_SLACK_MS = 2 * FRAME_MS
# ... or this soon, if it came after the last utterance's speech was over (hangover included):
# an unvoiced onset (Hebrew shin, samekh, tav) is flagged ~80 ms late.
LATE_ONSET_MS = 120


@dataclass(slots=True)
class _Utterance:
    number: int
    offset_ms: int
    speech_end: float  # clock of the last speech frame: FINAL latency is measured from it
    ended_at: float | None  # clock when speech was over (hangover); None while still speaking
    by_engine: bool = False  # opened on the engine's word, not the VAD's
    partial: str = ""  # latest interim text received (published or held)
    shown: str = ""  # latest partial published
    final_text: str | None = None  # text of the FINAL or latest revision published
    finalized: Literal["local", "engine"] | None = None
    engine_final: bool = False
    engine_words: list[str] = field(default_factory=list)  # the engine's finals, joined


@dataclass(slots=True)
class _Result:
    """The engine's open result: its unnumbered hypotheses since its last final."""

    # The utterances it covers, each with the index of its first word; hypotheses go to the last.
    spans: list[tuple[_Utterance, int]]
    first_at: float  # clock of its first hypothesis
    words: list[str] = field(default_factory=list)  # its latest text
    held: int = 0  # how many of its words the last utterance of `spans` holds
    held_before: int = 0  # what it held before it last grew
    grew_at: float | None = None  # clock when it last grew


class Endpointer:
    """Turn one call's frames and engine hypotheses into partial, final and revision events."""

    def __init__(
        self,
        *,
        call_sid: str,
        publish: Callable[[TranscriptEvent], None],
        clock: Callable[[], float] = time.perf_counter,
        wall_clock: Callable[[], float] = time.time,
        hangover_ms: int = 180,
        debounce_ms: int = 90,
        timeout_ms: int = 320,
        min_speech_ms: int = 60,
        aggressiveness: int = 2,
        tick_ms: int = 0,
        engine_lag_ms: int = ENGINE_LAG_MS,
        on_speech_start: Callable[[int], None] | None = None,
        on_speech_end: Callable[[int], None] | None = None,
    ) -> None:
        self.call_sid = call_sid
        self._publish = publish
        self._clock = clock
        self._wall_clock = wall_clock
        self.hangover_ms = hangover_ms
        self.debounce_ms = debounce_ms
        self.timeout_ms = timeout_ms
        self.min_speech_ms = min_speech_ms
        self.engine_lag_ms = engine_lag_ms
        # Float clocks: 100.09 - 100.0 may land a hair under 0.09, and the boundary must hold.
        self._debounce_s = debounce_ms / 1000 - CLOCK_EPSILON_S
        # `tick` runs every `tick_ms` (the RX cadence): a local final is made at the tick nearest
        # its due time. Judged strictly, a tick landing a few microseconds early (its clock read
        # is jittered against the one that stamped the end of speech) waits a whole tick more.
        self._timeout_s = timeout_ms / 1000 - CLOCK_EPSILON_S
        self._tick_slack_s = tick_ms / 2000
        self._on_speech_start = on_speech_start
        self._on_speech_end = on_speech_end
        self._vad = webrtcvad.Vad(aggressiveness)
        self._lock = threading.Lock()

        self._frames = 0  # frames processed: the audio position is frames * FRAME_MS
        self._run = 0  # consecutive speech frames
        self._run_start_ms = 0  # audio position of the run's first speech frame
        self._run_start_at = 0.0  # clock at the run's first speech frame
        self._silence = 0  # consecutive non-speech frames while speaking
        self._speaking: list[_Utterance] = []  # utterances the VAD's current speech belongs to
        self._vad_number = 0  # utterance the VAD opened last (its callbacks carry this number)
        self._next_number = 1
        self._utterances: dict[int, _Utterance] = {}
        self._result: _Result | None = None  # where unnumbered hypotheses go
        self._engine_last: _Utterance | None = None  # the utterance of the engine's last final
        self._result_closed_at = float("-inf")  # clock of the engine's last unnumbered final
        self._last_partial_at: float | None = None
        self._held: tuple[_Utterance, str] | None = None  # partial waiting for its debounce slot
        self._closed = False

    @classmethod
    def from_settings(
        cls,
        *,
        call_sid: str,
        publish: Callable[[TranscriptEvent], None],
        **overrides: object,
    ) -> Endpointer:
        """Build an endpointer with the STT parameters from Django settings."""
        from django.conf import settings

        params: dict[str, object] = {
            "debounce_ms": settings.PARTIAL_DEBOUNCE_MS,
            "hangover_ms": settings.VAD_HANGOVER_MS,
            "timeout_ms": settings.TIMEOUT_MS,
            "min_speech_ms": settings.VAD_MIN_SPEECH_MS,
            "aggressiveness": settings.VAD_AGGRESSIVENESS,
            "tick_ms": settings.FRAME_MS,
        }
        params.update(overrides)
        return cls(call_sid=call_sid, publish=publish, **params)  # type: ignore[arg-type]

    # --- state, for meters and tests ---------------------------------------------------------

    @property
    def position_ms(self) -> int:
        """Audio processed so far, in ms from the stream start."""
        return self._frames * FRAME_MS

    @property
    def speaking(self) -> bool:
        """Whether the VAD is inside an utterance."""
        return bool(self._speaking)

    @property
    def utterance(self) -> int:
        """Number of the utterance the VAD opened last (0: none yet)."""
        return self._vad_number

    # --- RX thread ---------------------------------------------------------------------------

    def process_frame(self, frame: bytes) -> bool:
        """Run the VAD on one 20 ms mu-law frame; open or close utterances; return is_speech."""
        if len(frame) != FRAME_BYTES:
            raise ValueError(f"expected a {FRAME_BYTES}-byte frame, got {len(frame)}")
        is_speech = self._vad.is_speech(ulaw_to_pcm16(frame), SAMPLE_RATE)
        started = ended = 0
        with self._lock:
            now = self._clock()
            position = self._frames * FRAME_MS
            self._frames += 1
            if is_speech:
                if self._run == 0:
                    self._run_start_ms = position
                    self._run_start_at = now
                self._run += 1
                self._silence = 0
                for utt in self._speaking:
                    utt.speech_end = now
                # Invariant 2: any speech frame, confirmed or not, may be the speech of an
                # utterance opened on the engine's word; it must not time out meanwhile.
                for utt in self._utterances.values():
                    if utt.by_engine and utt.finalized is None and utt not in self._speaking:
                        utt.speech_end = utt.ended_at = now
                confirmed = self._run * FRAME_MS >= self.min_speech_ms
                if not self._speaking and confirmed and not self._closed:
                    started = self._confirm(now).number
            else:
                self._run = 0
                if self._speaking:
                    self._silence += 1
                    if self._silence * FRAME_MS >= self.hangover_ms:
                        for utt in self._speaking:
                            utt.ended_at = now
                        self._speaking = []
                        ended = self._vad_number
        # Outside the lock: an engine may take its own lock or submit work here.
        if started and self._on_speech_start is not None:
            self._on_speech_start(started)
        if ended and self._on_speech_end is not None:
            self._on_speech_end(ended)
        return is_speech

    def tick(self) -> None:
        """Publish a partial whose debounce slot has come, and make local finals that are due."""
        with self._lock:
            if self._closed:
                return
            now = self._clock()
            if self._held is not None and now - self._last_partial_at >= self._debounce_s:
                utt, text = self._held
                self._held = None
                if utt.finalized is None:
                    self._show_partial(utt, text, now)
            for utt in self._utterances.values():
                if utt.partial and self._local_final_due(utt, now + self._tick_slack_s):
                    self._finalize_locally(utt, now)

    def close(self) -> None:
        """End of call: an utterance with a partial but no final gets its local final."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            now = self._clock()
            self._held = None
            self._result = None
            for utt in self._utterances.values():
                if utt.finalized is None and utt.partial:
                    self._finalize_locally(utt, now)
            self._speaking = []

    # --- engine threads ----------------------------------------------------------------------

    def hypothesis(self, h: Hypothesis) -> None:
        """Take an engine's interim or final text; publish what the rules allow."""
        text = h.text.strip()
        with self._lock:
            if self._closed:
                log.debug("call=%s hypothesis after close dropped: %r", self.call_sid, text)
                return
            now = self._clock()
            if h.utterance is None:
                self._unnumbered(text, h.is_final, now)
                return
            # Empty text is no sign of speech: it may close an utterance, never open one.
            utt = self._target(h.utterance, now, may_open=bool(text))
            if utt is None:
                return
            self._sign_of_speech(utt, now)
            if h.is_final:
                # A numbered final is the engine's whole text for its utterance.
                self._engine_final(utt, text.split(), now, replace=True)
            else:
                self._partial(utt, text, now)

    # --- rules (lock held) -------------------------------------------------------------------

    def _open(self, offset_ms: int, now: float, *, by_engine: bool) -> _Utterance:
        """Open the next utterance; the VAD's speech, if any, now belongs to it too."""
        utt = _Utterance(
            number=self._next_number,
            offset_ms=offset_ms,
            speech_end=now,
            ended_at=None if (self._speaking or not by_engine) else now,
            by_engine=by_engine,
        )
        self._next_number += 1
        self._add(utt)
        if by_engine:
            if self._speaking:
                self._speaking.append(utt)
        else:
            self._speaking = [utt]
            self._silence = 0
            self._vad_number = utt.number
        return utt

    def _confirm(self, now: float) -> _Utterance:
        """The VAD confirmed speech: open its utterance, or adopt the engine's (invariant 3)."""
        result = self._result
        owner = result.spans[-1][0] if result is not None else None
        if owner is not None and owner.by_engine and owner.finalized is None:
            # The engine heard this speech first: same utterance, now the VAD's.
            owner.by_engine = False
            owner.offset_ms = min(owner.offset_ms, self._run_start_ms)
            owner.speech_end, owner.ended_at = now, None
            self._speaking = [owner]
            self._silence = 0
            self._vad_number = owner.number
            return owner
        utt = self._open(self._run_start_ms, now, by_engine=False)
        if result is None or owner is None:
            return utt
        if owner.engine_final and self._began_with_run(owner, result.first_at):
            # A result taken as the last utterance's continuation began with this speech: it is
            # this utterance's (its partials were dropped, as the last one has its FINAL).
            result.spans = [(utt, 0)]
        else:
            # A merge: the words the open result heard past its owner's are this speech's,
            # counting those that came with it (the VAD may flag speech a frame or two late).
            # Words already out in the owner's local FINAL stay the owner's: giving them to this
            # utterance too would double them unless the engine's final came to revise it. Those
            # past them are this utterance's.
            grew = result.grew_at
            if grew is not None and self._began_with_run(owner, grew) and result.held_before:
                out = len(owner.final_text.split()) if owner.finalized == "local" else 0
                result.held = max(result.held_before, out)
                if owner.finalized is None:
                    start = result.spans[-1][1]
                    owner.partial = " ".join(result.words[start : start + result.held])
            self._move_on(result, result.words)
        last, start = result.spans[-1]
        if last is utt:
            result.held = len(result.words) - start
            self._partial(utt, " ".join(result.words[start:]), now)
        return utt

    def _began_with_run(self, owner: _Utterance, at: float) -> bool:
        """Whether an engine word at `at` came with the VAD's current run rather than `owner`."""
        if at >= self._run_start_at - ONSET_SLACK_MS / 1000:
            return True
        # An unvoiced onset the VAD flags late: after the owner's speech was over (hangover), a
        # word this soon before the run is the run's.
        return (
            owner.ended_at is not None
            and at > owner.ended_at
            and at >= self._run_start_at - LATE_ONSET_MS / 1000
        )

    def _add(self, utt: _Utterance) -> None:
        self._utterances[utt.number] = utt
        while len(self._utterances) > KEEP_UTTERANCES:
            oldest = min(self._utterances)
            if self._utterances[oldest].finalized is None and self._utterances[oldest].partial:
                # Forgotten before its timeout (only with a flood of utterances): keep its text.
                self._finalize_locally(self._utterances[oldest], self._clock())
            del self._utterances[oldest]
        if self._result is not None and len(self._result.spans) > 1:
            # Bounded state: an open result covers only utterances still kept (its last span
            # stays, as hypotheses go there); words of a forgotten one can revise nothing.
            spans = self._result.spans
            kept = [s for s in spans[:-1] if s[0].number in self._utterances]
            self._result.spans = [*kept, spans[-1]]

    def _target(self, number: int, now: float, *, may_open: bool) -> _Utterance | None:
        """Find (or open) the utterance a numbered hypothesis belongs to."""
        utt = self._utterances.get(number)
        if utt is not None:
            return utt
        if not may_open:
            return None
        if number < self._next_number:
            log.debug("call=%s utterance %d is forgotten", self.call_sid, number)
            return None
        utt = _Utterance(
            number=number,
            offset_ms=self._frames * FRAME_MS,
            speech_end=now,
            ended_at=None if self._speaking else now,
            by_engine=True,
        )
        self._next_number = number + 1
        self._add(utt)
        if self._speaking:
            self._speaking.append(utt)
        return utt

    @staticmethod
    def _ended_by_vad(utt: _Utterance) -> bool:
        return not utt.by_engine and utt.ended_at is not None

    def _sign_of_speech(self, utt: _Utterance, now: float) -> None:
        """Any engine word, a repeat too, restarts the timeout of an utterance the VAD never heard.

        An utterance the VAD heard ends when the VAD says so (invariant 4).
        """
        if utt.by_engine and not self._speaking and utt.finalized is None:
            utt.speech_end = utt.ended_at = now

    def _unnumbered(self, text: str, is_final: bool, now: float) -> None:
        """A hypothesis of the engine's open result (Google's); see "Attribution"."""
        words = text.split()
        result = self._result
        if not words and (result is None or not is_final):
            return  # empty text is no sign of speech: it opens nothing, and an interim says nothing
        if result is None:
            result = self._result = _Result([(self._new_result_owner(now), 0)], first_at=now)
        self._move_on(result, words)
        result.words = words
        owner, start = result.spans[-1]
        if words:
            self._sign_of_speech(owner, now)
        if not is_final:
            mine = words[start:]
            if self._run and not self._speaking and self._ended_by_vad(owner) and result.held:
                # Invariant 3: words past the owner's, heard while the VAD hears speech it has
                # not confirmed yet, are that speech's: they wait for its utterance.
                mine = mine[: result.held]
            if len(mine) > result.held:
                result.held_before, result.grew_at = result.held, now
            result.held = len(mine)
            self._partial(owner, " ".join(mine), now)
            return
        self._result = None
        self._result_closed_at = now
        self._engine_last = owner
        for i, (utt, begin) in enumerate(result.spans):
            end = result.spans[i + 1][1] if i + 1 < len(result.spans) else len(words)
            self._engine_final(utt, words[begin:end], now, replace=False)

    def _new_result_owner(self, now: float) -> _Utterance:
        """Choose the utterance a new engine result is about (invariant 6)."""
        lag_s = self.engine_lag_ms / 1000
        last = self._engine_last
        after = last.number if last is not None else 0
        waiting = [
            utt
            for number, utt in sorted(self._utterances.items())
            if number > after and not utt.engine_final
        ]
        for utt in waiting:
            # The oldest the engine has not spoken of: results come in order. One that got no
            # word was noise to the engine once newer speech has begun (a later utterance, or
            # speech the VAD hears but has not confirmed yet) if the engine was free to speak of
            # it (no result of its open since before it ended) or it ended over `engine_lag_ms`
            # ago: the engine's first word now is about the newer speech. With no newer speech,
            # a late word is still this one's.
            if not self._passed_over(utt, now):
                return utt
        split = (
            last is not None
            and not last.by_engine
            and last.number in self._utterances
            and (
                last in self._speaking
                or (last.ended_at is not None and now - last.ended_at <= lag_s)
            )
        )
        if split:
            return last  # a split: the engine's next result on the same speech
        # Speech the VAD did not confirm (yet): the VAD adopts it if it does (invariant 3).
        return self._open(
            self._run_start_ms if self._run else self.position_ms, now, by_engine=True
        )

    def _passed_over(self, utt: _Utterance, now: float) -> bool:
        """Whether the engine ignored `utt`: no word of it, newer speech since (see the caller)."""
        if utt.ended_at is None or utt.partial or utt.final_text is not None:
            return False
        engine_was_free = self._result_closed_at <= utt.ended_at
        if not engine_was_free and now - utt.ended_at <= self.engine_lag_ms / 1000:
            return False  # the engine was busy with an earlier result: its word may yet come
        newer = any(number > utt.number for number in self._utterances)
        return newer or (bool(self._run) and not self._speaking)

    def _move_on(self, result: _Result, words: list[str]) -> None:
        """A merge: once the VAD opened a later utterance, words past the owner's are the later's.

        The owner keeps the words it held when the later utterance began; it keeps them all
        while it holds none yet (results come in order).
        """
        while True:
            owner, start = result.spans[-1]
            later = [n for n in self._utterances if n > owner.number]
            if not later or result.held == 0 or len(words) - start <= result.held:
                return
            result.spans.append((self._utterances[min(later)], start + result.held))
            result.held = 0

    def _partial(self, utt: _Utterance, text: str, now: float) -> None:
        if not text or utt.finalized is not None:
            return  # nothing heard, or too late: the utterance has its final
        utt.partial = text
        if self._local_final_due(utt, now):
            # The timeout passed while the engine had nothing to say: this is the FINAL, now.
            self._finalize_locally(utt, now)
            return
        if text == utt.shown:
            if self._held is not None and self._held[0] is utt:
                self._held = None  # the latest text is already on screen
            return
        if self._last_partial_at is None or now - self._last_partial_at >= self._debounce_s:
            self._held = None
            self._show_partial(utt, text, now)
        else:
            self._held = (utt, text)

    def _show_partial(self, utt: _Utterance, text: str, now: float) -> None:
        utt.shown = text
        self._last_partial_at = now
        self._emit("partial", utt, text)

    def _local_final_due(self, utt: _Utterance, now: float) -> bool:
        return (
            utt.finalized is None
            and utt.ended_at is not None
            and now - utt.ended_at >= self._timeout_s
        )

    def _engine_final(
        self, utt: _Utterance, words: list[str], now: float, *, replace: bool
    ) -> None:
        """The engine's final words for `utt`: the FINAL if none is out, else a REVISED."""
        utt.engine_final = True
        if self._held is not None and self._held[0] is utt:
            self._held = None
        if utt.finalized is None:
            utt.finalized = "engine"
        # A split (invariant 6): each result's final adds its words to the utterance's text.
        utt.engine_words = list(words) if replace else utt.engine_words + words
        text = " ".join(utt.engine_words)
        if not text:
            # The engine heard no words: no FINAL, and no local final from a partial either,
            # since the engine's final word overrides its guesses. A FINAL already out stays.
            return
        if utt.final_text is None:
            utt.final_text = text
            self._emit("final", utt, text, latency_ms=self._latency(utt, now))
        elif text != utt.final_text:
            # Invariant 5: after the FINAL, only a REVISED, and only when the text changed.
            utt.final_text = text
            self._emit("revision", utt, text, latency_ms=self._latency(utt, now))

    def _finalize_locally(self, utt: _Utterance, now: float) -> None:
        utt.finalized = "local"
        utt.final_text = utt.partial
        if self._held is not None and self._held[0] is utt:
            self._held = None
        self._emit("final", utt, utt.partial, latency_ms=self._latency(utt, now), local=True)

    def _latency(self, utt: _Utterance, now: float) -> float:
        return round(max(0.0, now - utt.speech_end) * 1000, 1)

    def _emit(
        self,
        kind: TranscriptKind,
        utt: _Utterance,
        text: str,
        *,
        latency_ms: float | None = None,
        local: bool = False,
    ) -> None:
        event = TranscriptEvent(
            call_sid=self.call_sid,
            kind=kind,
            text=text,
            utterance=utt.number,
            offset_ms=utt.offset_ms,
            at=self._wall_clock(),
            latency_ms=latency_ms,
            local=local,
        )
        try:
            self._publish(event)
        except Exception:
            # A failing subscriber must not take the call's audio path down with it.
            log.exception("call=%s publishing %s failed", self.call_sid, kind)
