"""One call's Google recognition: the queue, the streams in turn, rotation, reconnects, close.

`write` only queues. Threads, all named after the call: `stt-<sid>` (the driver) runs the
streams in turn; `stt-s<k>-<sid>` reads stream k's responses; `stt-recognize-<sid>` makes the
single requests when streaming cannot be had (`single_request`). gRPC reads each stream's request
generator in a thread of its own (named `stt-q<k>-<sid>` at the OS level once it starts); a
generator returns as soon as its stream stops owning the queue (benchmarks sort the threads' CPU
by these OS names: `top -H`, /proc). A retired stream is half-closed and read until Google
closes it (its last final comes then), while the next one replays what is not final yet
(`timeline`). Live audio goes in BATCH_MS requests from speech onset until Google's final is
due, and in GOOGLE_STT_QUIET_BATCH_MS ones while the caller listens: each request costs the
gRPC client three thread hand-offs (its request thread, its channel's poller, and back).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from google.api_core import exceptions as core_exceptions
from google.cloud import speech_v1 as speech

from telephony.media.audio import FRAME_MS
from telephony.process.osthread import name_this_thread
from telephony.stt.base import EventSink, Hypothesis, HypothesisSink, SttSession
from telephony.stt.google.config import CATCH_UP_REQUEST_MS, MAX_SEGMENT_MS
from telephony.stt.google.rules import (
    SOFT_ROTATION,
    Fault,
    backoff_delay,
    classify,
    describe,
    should_rotate,
    took_enough_new_audio,
    trimmed_replay_ms,
)
from telephony.stt.google.single_request import SingleRequests
from telephony.stt.google.timeline import (
    Segment,
    StreamSpan,
    TimedWord,
    Timeline,
    ms,
    timed_words,
)

if TYPE_CHECKING:
    from telephony.stt.google.engine import GoogleSttEngine

log = logging.getLogger(__name__)

# Google's own final comes within ~1.6 s of the end of speech (p99 1,570 ms): until then audio
# goes in BATCH_MS requests, so that no final waits for a longer quiet batch to fill.
SPEECH_TAIL_S = 2.0
STREAM_DEADLINE_MARGIN_S = 30.0  # a stream's gRPC deadline: past its rotation, in case it hangs
SUPERVISE_POLL_S = 0.05
# Whatever ends a stream or makes a quiet moment wakes the driver; only age needs a clock. It
# looks again when a rotation may be due, at least this often (Google's limit is 15 s past ours).
SUPERVISE_IDLE_S = 1.0


@dataclass(eq=False)
class _Stream:
    index: int
    span: StreamSpan  # where it sits on the timeline
    opened_at: float
    replay: bytes
    client: speech.SpeechClient
    endpoint: str
    sent: int = 0  # bytes taken for it, replay included
    replayed: int = 0  # bytes of replay it started with
    responses: int = 0
    finals: int = 0  # final results Google sent on it (whether or not they published words)
    first_live_at: float | None = None  # clock() when it first took new audio
    ended_at: float | None = None
    quiet: bool = True  # no interim since its last final: nobody is mid-sentence
    ended: bool = False
    error: BaseException | None = None
    thread: threading.Thread | None = None


_PUMP = object()  # the driver itself owns the queue (single-request mode)


class GoogleSttSession(SttSession):
    """One call's recognition. `write` only queues; streams and requests run in the threads."""

    def __init__(
        self,
        engine: GoogleSttEngine,
        call_sid: str,
        on_hypothesis: HypothesisSink,
        *,
        on_event: EventSink | None = None,
    ) -> None:
        cfg = engine.config
        self.call_sid = call_sid
        self.engine = engine
        self.config = cfg
        self._on_hypothesis = on_hypothesis
        self._on_event = on_event
        self._clock = engine.clock
        self._bpm = cfg.bytes_per_ms
        self._batch_frames = max(1, cfg.batch_ms // FRAME_MS)
        # While the caller listens, audio goes in longer requests (each request costs gRPC
        # three thread hand-offs); from speech onset until Google's final is due, BATCH_MS.
        self._quiet_frames = max(self._batch_frames, cfg.quiet_batch_ms // FRAME_MS)
        self._wake_frames = self._quiet_frames  # what a batch is now: nobody has spoken yet
        self._loud_until = 0.0  # clock time short batches last until, after speech ended
        self._catch_up_frames = max(self._batch_frames, CATCH_UP_REQUEST_MS // FRAME_MS)
        self._streaming_config = cfg.streaming_config()

        # One lock; `_audio` wakes whoever takes frames, `_state` wakes the driver.
        self._lock = threading.Lock()
        self._audio = threading.Condition(self._lock)
        self._state = threading.Condition(self._lock)
        self._queue: deque[tuple[int, bytes]] = deque()
        self._owner: object | None = None  # the _Stream (or _PUMP) that takes frames

        # Counters: every frame given to `write` is written (taken by the engine) or dropped.
        self.frames_in = 0
        self.frames_written = 0
        self.frames_dropped = 0
        self.reconnects = 0
        self.rotations = 0
        self.streams_opened = 0
        self.requests_sent = 0
        self.max_request_bytes = 0
        self.recognize_requests = 0
        self.endpoint_fallbacks = 0
        self.mode = "streaming"  # or "single-request"

        self._timeline = Timeline(sample_bytes=cfg.sample_bytes, bytes_per_ms=cfg.bytes_per_ms)
        self._in_speech = False  # the local VAD's latest word: a quiet moment suits a rotation
        # Longest replay a new stream gets: cut when Google ends a stream whose replay crowded it
        # (`_trim_replay`), whole again once a stream shows audio fits (`_restore_replay`).
        self._replay_cap_ms = float(cfg.replay_max_ms)

        self._endpoints = engine.endpoints()
        self._endpoint_index = 0
        self._endpoint_served = False
        self._client: speech.SpeechClient | None = None
        self._closers: list[Callable[[], None]] = []
        self._streams: list[_Stream] = []
        self._single = SingleRequests(
            call_sid,
            cfg,
            client=lambda: self._client,
            on_result=self._on_recognized,
            on_event=self._event,
        )
        self._emit_lock = threading.Lock()
        self._closing = False
        self._closed = False
        self._driver = threading.Thread(target=self._run, name=f"stt-{call_sid}", daemon=True)

    def start(self) -> None:
        """Start the driver thread (the engine does this in `open`)."""
        self._driver.start()

    # --- RX thread ------------------------------------------------------------------------------

    def write(self, frame: bytes) -> None:
        """Queue one 20 ms frame; when the queue is full the oldest frame is dropped and counted."""
        with self._lock:
            seq = self.frames_in
            self.frames_in += 1
            if self._closing:
                self.frames_dropped += 1
                return
            if len(self._queue) >= self.config.queue_frames:
                self._queue.popleft()
                self.frames_dropped += 1
            self._queue.append((seq, frame))
            # Wake whoever takes frames once a batch is ready, not for every frame: a taker
            # woken by a lone frame only waits again (half of all its wake-ups at 40 ms). A lone
            # frame still goes: the taker's own timeout sends it when its partner is late.
            if len(self._queue) >= self._wake_frames:
                self._audio.notify_all()

    def speech_started(self, utterance: int) -> None:
        """Note where the local VAD heard speech begin (the frame about to be written)."""
        with self._lock:
            self._in_speech = True
            self._timeline.mark("start", utterance, self.frames_in)
            if self._wake_frames != self._batch_frames:
                # Speech: short batches again, and what waits (the onset) goes at once.
                self._wake_frames = self._batch_frames
                self._audio.notify_all()

    def speech_ended(self, utterance: int) -> None:
        """Note where the local VAD heard speech end; a quiet moment suits a rotation."""
        with self._lock:
            self._in_speech = False
            self._timeline.mark("end", utterance, self.frames_in)
            self._loud_until = self._clock() + SPEECH_TAIL_S
            self._audio.notify_all()
            self._state.notify_all()

    # --- counters -------------------------------------------------------------------------------

    @property
    def frames_pending(self) -> int:
        """Frames written but not yet taken by the engine."""
        with self._lock:
            return len(self._queue)

    @property
    def finals(self) -> int:
        """Finals accepted from streams and single requests."""
        with self._lock:
            return self._timeline.finals

    def stats(self) -> dict[str, int | str]:
        """Return the session's counters (for call totals and events)."""
        with self._lock:
            return {
                "frames_in": self.frames_in,
                "frames_written": self.frames_written,
                "frames_dropped": self.frames_dropped,
                "frames_pending": len(self._queue),
                "reconnects": self.reconnects,
                "rotations": self.rotations,
                "streams": self.streams_opened,
                "requests": self.requests_sent,
                "max_request_bytes": self.max_request_bytes,
                "finals": self._timeline.finals,
                "recognize_requests": self.recognize_requests,
                "endpoint_fallbacks": self.endpoint_fallbacks,
                "mode": self.mode,
            }

    # --- taking audio (lock held) ---------------------------------------------------------------

    def _take(self, count: int) -> bytes:
        """Move `count` frames from the queue onto the timeline; return their bytes."""
        frames = [self._queue.popleft() for _ in range(count)]
        self.frames_written += count
        # Single requests reach back up to a minute; a new stream replays at most replay_max_ms.
        keep_ms = MAX_SEGMENT_MS if self.mode == "single-request" else self.config.replay_max_ms
        return self._timeline.take(frames, keep_ms=keep_ms)

    # --- streams --------------------------------------------------------------------------------

    def _requests(self, stream: _Stream) -> Iterator[speech.StreamingRecognizeRequest]:
        """Yield the replay, then live audio in batches (`_batch`), until the stream is let go."""
        name_this_thread(f"stt-q{stream.index}-{self.call_sid}")  # gRPC's thread, ours to name
        replay, stream.replay = stream.replay, b""
        step = self.config.catch_up_bytes
        for i in range(0, len(replay), step):
            chunk = replay[i : i + step]
            with self._lock:
                self._count_request(len(chunk))
            yield speech.StreamingRecognizeRequest(audio_content=chunk)
        while True:
            audio = self._next_batch(stream)
            if audio is None:
                return  # half-close: Google finalizes what it heard and ends the stream
            yield speech.StreamingRecognizeRequest(audio_content=audio)

    def _count_request(self, size: int) -> None:
        self.requests_sent += 1
        self.max_request_bytes = max(self.max_request_bytes, size)

    def _batch(self) -> int:
        """Frames in a live request now: BATCH_MS in speech and its tail, longer in quiet."""
        if (
            self._wake_frames != self._quiet_frames
            and not self._in_speech
            and self._clock() >= self._loud_until
        ):
            self._wake_frames = self._quiet_frames
        return self._wake_frames

    def _next_batch(self, stream: _Stream) -> bytes | None:
        """Wait for a batch of frames (or a backlog); None once the stream no longer owns them."""
        waiting_since: float | None = None
        with self._lock:
            while True:
                if self._owner is not stream:
                    return None
                batch = self._batch()
                batch_s = batch * FRAME_MS / 1000
                # A lone frame waits this long for its partner: the RX thread may run up to one
                # batch late before it resyncs, and a frame must not wait for ever when writes
                # stop.
                lone_wait_s = 2 * batch_s
                n = len(self._queue)
                flush = self._closing or (
                    waiting_since is not None and self._clock() - waiting_since >= lone_wait_s
                )
                if n >= batch or (n and flush):
                    # Live audio goes one batch per request; a backlog goes in bigger requests.
                    limit = self._catch_up_frames if n > batch else batch
                    audio = self._take(min(n, limit))
                    if stream.first_live_at is None:
                        stream.first_live_at = self._clock()
                    stream.sent += len(audio)
                    self._count_request(len(audio))
                    return audio
                if self._closing:
                    return None  # everything is sent: half-close
                if n and waiting_since is None:
                    # Half a batch: send it anyway if the next frame is late (no final waits).
                    waiting_since = self._clock()
                # Writes wake us per batch, not per frame: a frame that came alone is seen
                # by this timeout, and goes within two more (a stalled RX side, a hang-up).
                self._audio.wait(timeout=batch_s if n else lone_wait_s)

    def _open_stream(self) -> _Stream:
        assert self._client is not None
        with self._lock:
            start, replay, lost_ms = self._timeline.replay(self._replay_cap_ms)
            if lost_ms:
                log.warning(
                    "call=%s replay capped at %.0f ms: %.0f ms of unfinalized audio not replayed",
                    self.call_sid,
                    self._replay_cap_ms,
                    lost_ms,
                )
            stream = _Stream(
                index=self.streams_opened,
                span=self._timeline.open_span(start),
                opened_at=self._clock(),
                replay=replay,
                client=self._client,
                endpoint=self._endpoints[self._endpoint_index],
                sent=len(replay),
                replayed=len(replay),
            )
            self.streams_opened += 1
            # Streams that ended and whose reader is gone need no joining: forget them.
            self._streams = [
                s for s in self._streams if not (s.ended and s.thread and not s.thread.is_alive())
            ]
            self._streams.append(stream)
            self._owner = stream
        stream.thread = threading.Thread(
            target=self._read, args=(stream,), name=f"stt-s{stream.index}-{self.call_sid}"
        )
        stream.thread.daemon = True
        stream.thread.start()
        log.debug(
            "call=%s stream %d opened at %.0f ms (replay %d ms) on %s",
            self.call_sid,
            stream.index,
            stream.span.start_ms,
            len(replay) // self._bpm,
            stream.endpoint,
        )
        return stream

    def _read(self, stream: _Stream) -> None:
        """Read one stream's responses until Google (or a hard stop) ends it."""
        name_this_thread(f"stt-s{stream.index}-{self.call_sid}")
        error: BaseException | None = None
        try:
            responses = stream.client.streaming_recognize(
                self._streaming_config,
                self._requests(stream),
                # Reconnects are ours (with replay); the library's retry would lose audio.
                retry=None,
                timeout=self.config.rotate_s + STREAM_DEADLINE_MARGIN_S,
            )
            for response in responses:
                if response.error.code:
                    raise core_exceptions.from_grpc_status(
                        response.error.code, response.error.message
                    )
                self._on_response(stream, response)
        except Exception as exc:  # every way a stream ends is handled by the driver
            error = exc
        with self._lock:
            stream.ended = True
            stream.ended_at = self._clock()
            stream.error = error
            self._timeline.end(stream.span)
            if self._owner is stream:
                self._owner = None
            self._audio.notify_all()
            self._state.notify_all()

    def _supervise(self, stream: _Stream) -> str:
        """Wait until the stream ends, is due for rotation, or the session closes."""
        rotate_s = self.config.rotate_s
        with self._lock:
            while True:
                if stream.ended:
                    return "ended"
                if self._closing:
                    return "closing"
                # A backlog sent faster than real time ages a stream faster than the clock.
                # The replay does not count: else a long replay would rotate at once, forever.
                live_s = (stream.sent - stream.replayed) / self._bpm / 1000
                age = max(self._clock() - stream.opened_at, live_s)
                if should_rotate(age, rotate_s, quiet=stream.quiet or not self._in_speech):
                    return "rotate"
                due_s = SOFT_ROTATION * rotate_s - age  # before this, no rotation at all
                self._state.wait(timeout=min(SUPERVISE_IDLE_S, max(SUPERVISE_POLL_S, due_s)))

    def _retire(self, stream: _Stream) -> None:
        """Let the stream go: it half-closes, delivers its last final, and ends."""
        with self._lock:
            retired_at_ms = stream.span.start_ms + stream.sent / self._bpm
            self._timeline.retire(stream.span, retired_at_ms)
            if self._owner is stream:
                self._owner = None
            self._audio.notify_all()
            self.rotations += 1
        self._event("stt_rotation", f"stream {stream.index} retired at {retired_at_ms:.0f} ms")

    # --- results --------------------------------------------------------------------------------

    def _on_response(self, stream: _Stream, response: speech.StreamingRecognizeResponse) -> None:
        if not response.results:
            return
        out: list[Hypothesis] = []
        span = stream.span
        with self._emit_lock:
            with self._lock:
                if self._closed:
                    return
                stream.responses += 1
                self._endpoint_served = True
                interims = []
                # Where the stream's audio stood as this arrived: all it can be about.
                arrival_ms = (
                    span.retired_at_ms
                    if span.retired_at_ms is not None
                    else span.start_ms + stream.sent / self._bpm
                )
                for result in response.results:
                    if result.is_final:
                        stream.finals += 1
                        alt = result.alternatives[0] if result.alternatives else None
                        # No result_end_time comes as zero: a final cannot end at its start.
                        end = ms(result.result_end_time)
                        text = self._timeline.accept_final(
                            span,
                            alt.transcript if alt is not None else "",
                            span.start_ms + end if end > 0 else None,
                            timed_words(alt.words, span.start_ms) if alt is not None else [],
                            arrival_ms=arrival_ms,
                        )
                        if text:
                            out.append(Hypothesis(text, True))
                    else:
                        interims.append(result)
                stream.quiet = not interims
                if interims:
                    text = self._timeline.interim(
                        span, [r.alternatives[0].transcript for r in interims if r.alternatives]
                    )
                    if text:
                        out.append(Hypothesis(text, False))
                self._state.notify_all()
            for hypothesis in out:
                self._publish(hypothesis)

    def _on_recognized(self, segment: Segment, words: list[TimedWord], texts: list[str]) -> None:
        """Publish what a single request heard that no final has published yet."""
        with self._emit_lock:
            with self._lock:
                self.recognize_requests += 1
                if self._closed:
                    return
                text = self._timeline.accept_recognized(words, texts, segment.end / self._bpm)
            if text:
                self._publish(Hypothesis(text, True, utterance=segment.utterance))

    def _publish(self, hypothesis: Hypothesis) -> None:
        try:
            self._on_hypothesis(hypothesis)
        except Exception:
            log.exception("call=%s hypothesis sink failed", self.call_sid)

    def _event(self, kind: str, detail: str) -> None:
        log.info("call=%s %s: %s", self.call_sid, kind, detail)
        if self._on_event is not None:
            try:
                self._on_event(kind, detail)
            except Exception:
                log.exception("call=%s event sink failed", self.call_sid)

    # --- the driver -----------------------------------------------------------------------------

    def _run(self) -> None:
        name_this_thread(f"stt-{self.call_sid}")
        try:
            self._drive()
        except Exception as exc:
            log.exception("call=%s Google STT driver failed", self.call_sid)
            self._event("stt_error", describe(exc))

    def _drive(self) -> None:
        failures = 0
        if not self._endpoints:
            self._endpoints = [self.config.endpoints[0]]
            self._enter_single_request("every endpoint refused streaming lately")
        while not self._closing:
            if self.mode == "single-request":
                self._ensure_client()
                self._pump(until=None)
                return
            if not self._ensure_client():
                failures += 1
                if not self._sleep(self._backoff(failures)):
                    return
                continue
            stream = self._open_stream()
            outcome = self._supervise(stream)
            if outcome == "closing":
                return
            if outcome == "rotate":
                with self._lock:
                    fitted = self._audio_fitted(stream)
                if fitted:
                    self._restore_replay(stream)
                self._retire(stream)
                continue
            with self._lock:
                replayed_ms = stream.replayed / self._bpm
                live_ms = (stream.sent - stream.replayed) / self._bpm
                accepted = self._accepted_new_audio(stream)
                fitted = self._audio_fitted(stream)
            # Only a stream that accepted new audio ends a run of failures: one that ended before
            # accepting any (beyond its replay) is a failure, whatever it answered.
            if accepted:
                failures = 0
            fault = classify(stream.error)
            reason = describe(stream.error)
            if fault is Fault.DURATION:
                # A rotation only if the server accepted new audio, and enough was taken for it:
                # taken alone may be a backlog gRPC pulled from the queue before the server
                # ended the stream at once.
                if accepted and took_enough_new_audio(live_ms):
                    self._restore_replay(stream)
                    with self._lock:
                        self.rotations += 1
                    self._event("stt_rotation", f"stream {stream.index} ended by Google ({reason})")
                    continue
                # Ended for length before it made room for new audio: the same replay would end
                # the next stream the same way, so it is cut, and the next stream waits.
                self._trim_replay(stream, replayed_ms, live_ms)
            elif fitted:
                self._restore_replay(stream)
            if fault is Fault.REFUSED and not self._endpoint_served:
                self._fall_back(stream.endpoint, reason)
                continue
            failures += 1
            with self._lock:
                self.reconnects += 1
            self._event("stt_reconnect", f"stream {stream.index}: {reason} (attempt {failures})")
            # After an audio timeout a new stream now would time out the same way: wait for
            # audio, then back off as for any failure (a server that times out at once must not
            # get a stream per frame).
            if fault is Fault.AUDIO_TIMEOUT and not self._wait_for_audio():
                return
            delay = self._backoff(failures)
            if failures >= self.config.max_failures:
                # Streaming cannot be had for now: VAD-cut utterances go to `recognize`
                # while we wait to try again.
                if failures == self.config.max_failures:
                    self._event(
                        "stt_single_request", f"streaming down after {failures} attempts: {reason}"
                    )
                self._pump(until=self._clock() + delay)
            elif not self._sleep(delay):
                return

    def _accepted_new_audio(self, stream: _Stream) -> bool:
        """Tell whether the stream accepted new audio (lock held).

        gRPC takes requests ahead of the server: a stream the server ends at once may have taken
        a backlog from the queue all the same. It counts only if the stream was still open a
        batch period after it first took new audio (to now, for a stream not ended yet).
        """
        if stream.first_live_at is None:
            return False
        end = stream.ended_at if stream.ended_at is not None else self._clock()
        return end - stream.first_live_at >= self.config.batch_ms / 1000

    def _audio_fitted(self, stream: _Stream) -> bool:
        """Tell whether the stream showed that audio fits in a stream again (lock held).

        It did if it accepted new audio, or if Google finalized some of what it sent (a final).
        """
        return stream.finals > 0 or self._accepted_new_audio(stream)

    def _trim_replay(self, stream: _Stream, replayed_ms: float, live_ms: float) -> None:
        """Cut the replay cap after Google ended `stream` for length before it made room.

        The rule: a stream that ended for length without accepting new audio (or without
        taking MIN_LIVE_MS_BEFORE_LENGTH_END of it) was crowded by its replay, so every later
        replay gets at most half of that replay (`trimmed_replay_ms`; a stream with no replay
        leaves the cap as it is). The cap only shrinks here, for as long as streams keep
        ending that way; `_restore_replay` makes it whole again once one shows audio fits.
        """
        cap_ms = trimmed_replay_ms(self._replay_cap_ms, replayed_ms)
        if cap_ms < self._replay_cap_ms:
            self._replay_cap_ms = cap_ms
            self._event(
                "stt_replay_trimmed",
                f"stream {stream.index} ended for length after {replayed_ms:.0f} ms of replay "
                f"and {live_ms:.0f} ms of new audio; replays now at most {cap_ms:.0f} ms",
            )

    def _restore_replay(self, stream: _Stream) -> None:
        """Give later replays the full cap again: `stream` accepted new audio or gave a final.

        A trim is for the episode in which replays did not fit; kept for the rest of the call,
        every later rotation or reconnect would lose all but the trimmed share of what is not
        final yet. Should the full replay still not fit (a server whose streams hold less than
        the unfinalized audio), it is trimmed again, each time after a backoff.
        """
        full_ms = float(self.config.replay_max_ms)
        if self._replay_cap_ms < full_ms:
            self._replay_cap_ms = full_ms
            self._event(
                "stt_replay_restored",
                f"stream {stream.index} showed audio fits; replays again up to {full_ms:.0f} ms",
            )

    def _backoff(self, failures: int) -> float:
        cfg = self.config
        return backoff_delay(failures - 1, cfg.backoff_s, cfg.backoff_max_s, self.engine.rand)

    def _fall_back(self, endpoint: str, reason: str) -> None:
        """The endpoint refused us before serving anything: try the next one, once each."""
        self.engine.refuse(endpoint, reason)
        if self._endpoint_index + 1 < len(self._endpoints):
            self._endpoint_index += 1
            self._client = None
            self.endpoint_fallbacks += 1
            self._event(
                "stt_endpoint_fallback",
                f"{endpoint} refused ({reason}); now {self._endpoints[self._endpoint_index]}",
            )
        else:
            self._enter_single_request(f"{endpoint} refused streaming ({reason})")

    def _enter_single_request(self, why: str) -> None:
        self.mode = "single-request"
        self._event("stt_single_request", why)

    def _ensure_client(self) -> bool:
        if self._client is not None:
            return True
        endpoint = self._endpoints[self._endpoint_index]
        try:
            self._client, closer = self.engine.make_client(endpoint)
        except Exception as exc:  # credentials or endpoint unusable: counted as a failure
            log.exception("call=%s cannot make a client for %s", self.call_sid, endpoint)
            self._event("stt_error", f"client for {endpoint}: {describe(exc)}")
            return False
        with self._lock:
            self._closers.append(closer)
        return True

    def _sleep(self, seconds: float) -> bool:
        """Wait out a backoff (frames wait in the queue); False if the session closes meanwhile."""
        deadline = self._clock() + seconds
        with self._lock:
            while not self._closing:
                left = deadline - self._clock()
                if left <= 0:
                    return True
                self._state.wait(timeout=min(left, SUPERVISE_POLL_S))
            return False

    def _wait_for_audio(self) -> bool:
        with self._lock:
            while not self._queue and not self._closing:
                self._audio.wait(timeout=0.5)
            return not self._closing

    def _pump(self, until: float | None) -> None:
        """Own the queue: keep the timeline, send each VAD-cut utterance to `recognize`."""
        self._single.start()
        with self._lock:
            self._owner = _PUMP
            try:
                while True:
                    if self._queue:
                        self._take(len(self._queue))
                    if self._closing:
                        # The call is over: pending marks belong to audio already taken, and
                        # an utterance still open ends here.
                        self._timeline.end_utterances()
                        self._submit_segments()
                        return
                    self._submit_segments()
                    if until is not None and self._clock() >= until:
                        return
                    self._audio.wait(timeout=SUPERVISE_POLL_S)
            finally:
                if self._owner is _PUMP:
                    self._owner = None

    def _submit_segments(self) -> None:
        """Queue every ended VAD utterance whose audio no final covers yet (lock held)."""
        for segment in self._timeline.due_segments():
            self._single.submit(segment)

    # --- close ----------------------------------------------------------------------------------

    def close(self, timeout: float = 1.0) -> None:
        """Send what is queued, take the last final, stop every thread, within `timeout` s."""
        deadline = time.monotonic() + timeout
        # Past this, what Google has not finished is cut off: channels close, RPCs cancel.
        soft = time.monotonic() + timeout * 0.7
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._audio.notify_all()
            self._state.notify_all()
        self._driver.join(max(0.0, soft - time.monotonic()))
        for stream in list(self._streams):
            if stream.thread is not None:
                stream.thread.join(max(0.0, soft - time.monotonic()))
        self._single.stop(until=soft)
        with self._lock:
            closers, self._closers = self._closers, []
        for closer in closers:
            try:
                closer()
            except Exception:
                log.exception("call=%s closing a Google channel failed", self.call_sid)
        self._driver.join(max(0.0, deadline - time.monotonic()))
        for stream in list(self._streams):
            if stream.thread is not None:
                stream.thread.join(max(0.0, deadline - time.monotonic()))
        self._single.abandon(until=deadline)
        with self._lock:
            self._closed = True
            # Audio no stream or request took: lost, so counted.
            self.frames_dropped += len(self._queue)
            self._queue.clear()
        alive = self.alive_threads()
        if alive:
            log.warning("call=%s Google STT threads still alive: %s", self.call_sid, alive)
        log.info("call=%s Google STT closed: %s", self.call_sid, self.stats())

    def alive_threads(self) -> list[str]:
        """Names of this session's threads still running (none after `close`)."""
        threads = [self._driver, self._single.thread, *(s.thread for s in self._streams)]
        return [t.name for t in threads if t is not None and t.is_alive()]
