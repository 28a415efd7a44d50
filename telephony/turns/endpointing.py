"""Endpointing shared by every STT engine: local VAD, partial debounce, local final on timeout.

The RX thread feeds each inbound frame to `process_frame` and calls `tick` every loop; engines
report what they heard through `hypothesis` from their own threads. Out come `TranscriptEvent`s:

- `partial`: at most one per `debounce_ms`, the latest text wins, repeats and empty text dropped.
- `final`: the engine's final for the utterance, or, when the engine stays quiet for `timeout_ms`
  after speech is over, the latest partial marked `local=True` (at the tick nearest that time,
  or when the first partial comes, if none had by then). Never empty, one per utterance.
- `revision`: an engine final that arrives after a local final and says something else.

Speech boundaries are counted in audio (frames of 20 ms), so a burst of queued frames is judged
as the caller spoke it; publishing (debounce, timeout, latency) runs on the injected clock.

Attribution. A hypothesis goes to `h.utterance` when the engine numbers it (Whisper does, with
the numbers `on_speech_start` handed out); otherwise to the utterance the VAD opened most
recently. Two cases open an utterance on the engine's word alone, because the engine heard
speech the VAD did not confirm: no utterance exists yet, or the engine already gave the target
its final (an engine with its own endpointing, such as Google, has moved on to new speech).
Such an utterance starts at the current audio position; while the VAD hears no speech, each of
its hypotheses counts as its latest sign of speech, so its local timeout runs from the engine's
last word and its latency from the engine's last hypothesis.

Threading: one lock guards the state; `publish` is called with it held so events leave in order,
and must be quick (enqueue, log) and never call back into the endpointer. The speech callbacks
run without the lock, on the thread that called `process_frame`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import webrtcvad

from telephony.media.audio import FRAME_BYTES, FRAME_MS, SAMPLE_RATE, ulaw_to_pcm16
from telephony.stt.base import Hypothesis
from telephony.turns.transcript import TranscriptEvent, TranscriptKind

logger = logging.getLogger(__name__)

# Finalized utterances are kept this long (in utterances) so a late engine final can revise them.
KEEP_UTTERANCES = 16
CLOCK_EPSILON_S = 1e-6


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
        self._silence = 0  # consecutive non-speech frames while speaking
        self._speaking: list[_Utterance] = []  # utterances the VAD's current speech belongs to
        self._vad_number = 0  # utterance the VAD opened last (its callbacks carry this number)
        self._next_number = 1
        self._utterances: dict[int, _Utterance] = {}
        self._current: _Utterance | None = None  # where unnumbered hypotheses go
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
                self._run += 1
                self._silence = 0
                if self._speaking:
                    for utt in self._speaking:
                        utt.speech_end = now
                elif self._run * FRAME_MS >= self.min_speech_ms and not self._closed:
                    started = self._open(self._run_start_ms, now, by_engine=False).number
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
                logger.debug("call=%s hypothesis after close dropped: %r", self.call_sid, text)
                return
            now = self._clock()
            # Empty text is no sign of speech: it may close an utterance, never open one.
            utt = self._target(h.utterance, now, may_open=bool(text))
            if utt is None:
                return
            if utt.by_engine and not self._speaking and utt.finalized is None:
                # No VAD speech to go by: the engine's latest word is the latest sign of speech.
                utt.speech_end = utt.ended_at = now
            if h.is_final:
                self._engine_final(utt, text, now)
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
        self._current = utt
        if by_engine:
            if self._speaking:
                self._speaking.append(utt)
        else:
            self._speaking = [utt]
            self._silence = 0
            self._vad_number = utt.number
        return utt

    def _add(self, utt: _Utterance) -> None:
        self._utterances[utt.number] = utt
        while len(self._utterances) > KEEP_UTTERANCES:
            oldest = min(self._utterances)
            if self._utterances[oldest].finalized is None and self._utterances[oldest].partial:
                # Forgotten before its timeout (only with a flood of utterances): keep its text.
                self._finalize_locally(self._utterances[oldest], self._clock())
            del self._utterances[oldest]

    def _target(self, number: int | None, now: float, *, may_open: bool) -> _Utterance | None:
        """Find (or open) the utterance a hypothesis belongs to."""
        position = self._frames * FRAME_MS
        if number is not None:
            utt = self._utterances.get(number)
            if utt is None:
                if not may_open:
                    return None
                if number < self._next_number:
                    logger.debug("call=%s utterance %d is forgotten", self.call_sid, number)
                    return None
                utt = _Utterance(
                    number=number,
                    offset_ms=position,
                    speech_end=now,
                    ended_at=None if self._speaking else now,
                    by_engine=True,
                )
                self._next_number = number + 1
                self._add(utt)
                self._current = utt
                if self._speaking:
                    self._speaking.append(utt)
            return utt
        utt = self._current
        if utt is None or utt.engine_final:
            if not may_open:
                return None
            # The VAD heard nothing long enough yet, or the engine moved on after its final.
            offset = self._run_start_ms if self._run else position
            utt = self._open(offset, now, by_engine=True)
        return utt

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

    def _engine_final(self, utt: _Utterance, text: str, now: float) -> None:
        utt.engine_final = True
        if self._held is not None and self._held[0] is utt:
            self._held = None
        if utt.finalized is None:
            utt.finalized = "engine"
        if not text:
            # The engine heard no words: no FINAL, and no local final from a partial either,
            # since the engine's final word overrides its guesses. A FINAL already out stays.
            return
        if utt.final_text is None:
            utt.final_text = text
            self._emit("final", utt, text, latency_ms=self._latency(utt, now))
        elif text != utt.final_text:
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
            logger.exception("call=%s publishing %s failed", self.call_sid, kind)
