"""Google Cloud Speech-to-Text v1 streaming for one call: batching, rotation, reconnects, fallback.

One timeline. Every byte a session takes from its queue gets an absolute offset; each stream
starts at some offset and Google's times on it are relative to that start, so results from all
streams land on the same timeline. That is what makes stream changes lossless:

- a new stream (rotation before Google's ~305 s limit, or a reconnect after a fault) first
  replays the audio after the end of the last published final, then carries on with live audio;
- a retired stream is half-closed and read until Google closes it (its last final comes then);
- finals are de-duplicated by time: a word whose middle lies at or before the end of what is
  already published is dropped, whichever stream reports it first; the words a retired stream
  heard last may be cut off, so they are left to the next stream, which heard them whole.

Threads, all named after the call: `stt-<sid>` runs the streams in turn, `stt-s<k>-<sid>` reads
stream k's responses, `stt-recognize-<sid>` makes single `recognize` requests for utterances cut
by the local VAD when streaming cannot be had. gRPC reads each stream's request generator in a
thread of its own; a generator returns as soon as its stream stops owning the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import queue
import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import grpc
from google.api_core import exceptions as core_exceptions
from google.api_core import retry as retries
from google.auth.credentials import AnonymousCredentials
from google.cloud import speech_v1 as speech
from google.cloud.speech_v1.services.speech.transports.grpc import SpeechGrpcTransport

from telephony.media.audio import FRAME_MS, SAMPLE_RATE, ulaw_to_pcm16
from telephony.stt.base import EventSink, Hypothesis, HypothesisSink, SttEngine, SttSession

logger = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 25_000  # Google takes at most 25 KB of audio per streaming request
CATCH_UP_REQUEST_MS = 1000  # replays and backlogs go in 1 s requests rather than 40 ms ones
# After a rotation the old stream's last words may have been cut off mid-word by the half-close;
# words ending this close to its cut-off are left to the new stream, which heard them whole.
TRUNCATION_GUARD_MS = 120
SOFT_ROTATION = 0.8  # past this share of the rotation age, rotate at the first quiet moment
STREAM_DEADLINE_MARGIN_S = 30.0  # a stream's gRPC deadline: past its rotation, in case it hangs
REFUSAL_TTL_S = 600.0  # a refused endpoint is skipped by new sessions this long
PREROLL_MS = 300  # the VAD confirms speech after it began: `recognize` gets what came before
MAX_SEGMENT_MS = 55_000  # `recognize` takes at most one minute of audio
RECOGNIZE_QUEUE = 8  # utterances waiting for `recognize`; more means the service is stuck
TRIM_SLACK_BYTES = 32 * 1024  # trim the history in steps, not on every frame
SUPERVISE_POLL_S = 0.05
MAX_VAD_UTTERANCES = 16
WORD_EPSILON_MS = 1e-3

# Codes meaning "this endpoint will not serve this request", as opposed to "try again".
REFUSAL_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)


# --- pure rules ---------------------------------------------------------------------------------


class Fault(enum.Enum):
    """What a stream's end calls for."""

    DURATION = "duration"  # Google's stream limit: open the next stream at once
    AUDIO_TIMEOUT = "audio_timeout"  # no audio reached Google for a while: reconnect with audio
    REFUSED = "refused"  # the endpoint will not serve this language/model/config
    TRANSIENT = "transient"  # unavailable, deadline, dropped stream...: reconnect with backoff


def classify(error: BaseException | None) -> Fault:
    """Tell what a stream's end calls for (`None`: Google ended it without being asked)."""
    if error is None:
        return Fault.TRANSIENT
    code = getattr(error, "grpc_status_code", None)
    message = str(getattr(error, "message", error)).lower()
    if code == grpc.StatusCode.OUT_OF_RANGE:
        if "audio timeout" in message or "without audio" in message:
            return Fault.AUDIO_TIMEOUT
        if "duration" in message:
            return Fault.DURATION
    if code in REFUSAL_CODES:
        return Fault.REFUSED
    return Fault.TRANSIENT


def describe(error: BaseException | None) -> str:
    """Say in one line why a stream ended."""
    if error is None:
        return "stream closed by the server"
    code = getattr(error, "grpc_status_code", None)
    message = getattr(error, "message", None) or str(error)
    return f"{code.name}: {message}" if code is not None else f"{type(error).__name__}: {message}"


def backoff_delay(attempt: int, base_s: float, max_s: float, rand: Callable[[], float]) -> float:
    """Return the wait before reconnect `attempt` (0 first): doubling, capped, jittered."""
    delay = min(max_s, base_s * 2 ** min(attempt, 30))
    # Jitter: calls that lost Google at the same moment do not all come back at the same moment.
    return delay * (0.5 + 0.5 * rand())


def should_rotate(age_s: float, rotate_s: float, *, quiet: bool) -> bool:
    """Tell whether a stream this old should give way to the next one."""
    return age_s >= rotate_s or (quiet and age_s >= SOFT_ROTATION * rotate_s)


@dataclass(frozen=True, slots=True)
class TimedWord:
    text: str
    start_ms: float  # on the session's timeline
    end_ms: float

    @property
    def mid_ms(self) -> float:
        return (self.start_ms + self.end_ms) / 2


def words_after(words: list[TimedWord], cut_ms: float) -> list[TimedWord]:
    """Keep the words whose middle lies after `cut_ms` (the rest is already published)."""
    return [w for w in words if w.mid_ms > cut_ms + WORD_EPSILON_MS]


def _ms(duration: timedelta) -> float:
    return duration.total_seconds() * 1000.0


# --- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GoogleSttConfig:
    """Everything a Google STT engine needs; `from_settings` reads it from Django settings."""

    endpoints: tuple[str, ...] = ("speech.googleapis.com",)
    insecure: bool = False  # plaintext gRPC and no credentials: a local emulator
    language: str = "he-IL"
    model: str = ""  # empty: Google picks
    encoding: str = "MULAW"  # MULAW sends Twilio's bytes as is; LINEAR16 decodes them first
    batch_ms: int = 40
    queue_frames: int = 250
    rotate_s: float = 290.0
    replay_max_ms: int = 20_000
    backoff_s: float = 0.25
    backoff_max_s: float = 4.0
    max_failures: int = 3
    recognize_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError("at least one endpoint is needed")
        if self.encoding not in ("MULAW", "LINEAR16"):
            raise ValueError(f"encoding must be MULAW or LINEAR16, not {self.encoding!r}")
        if self.batch_ms < FRAME_MS or self.catch_up_bytes > MAX_REQUEST_BYTES:
            raise ValueError("batch and catch-up requests must hold 20 ms to 25 KB of audio")

    @classmethod
    def from_settings(cls) -> GoogleSttConfig:
        """Read the GOOGLE_* settings; an emulator host ("h:p[,h:p]") replaces the endpoints."""
        from django.conf import settings

        emulator = [h.strip() for h in settings.GOOGLE_SPEECH_EMULATOR_HOST.split(",") if h]
        if emulator:
            endpoints, insecure = emulator, True
        else:
            endpoints = [
                settings.GOOGLE_SPEECH_ENDPOINT,
                *settings.GOOGLE_SPEECH_FALLBACK_ENDPOINTS,
            ]
            insecure = False
        return cls(
            endpoints=tuple(dict.fromkeys(e for e in endpoints if e)),
            insecure=insecure,
            language=settings.STT_LANGUAGE,
            model=settings.GOOGLE_SPEECH_MODEL,
            encoding=settings.GOOGLE_SPEECH_ENCODING.upper(),
            batch_ms=settings.BATCH_MS,
            queue_frames=settings.GOOGLE_STT_QUEUE_FRAMES,
            rotate_s=settings.GOOGLE_STREAM_ROTATE_S,
            replay_max_ms=settings.GOOGLE_STT_REPLAY_MAX_MS,
            backoff_s=settings.GOOGLE_STREAM_BACKOFF_S,
            backoff_max_s=settings.GOOGLE_STREAM_BACKOFF_MAX_S,
            max_failures=settings.GOOGLE_STREAM_MAX_FAILURES,
            recognize_timeout_s=settings.GOOGLE_RECOGNIZE_TIMEOUT_S,
        )

    @property
    def bytes_per_ms(self) -> int:
        return (2 if self.encoding == "LINEAR16" else 1) * SAMPLE_RATE // 1000

    @property
    def catch_up_bytes(self) -> int:
        return CATCH_UP_REQUEST_MS * self.bytes_per_ms

    def recognition_config(self) -> speech.RecognitionConfig:
        """Build the v1 RecognitionConfig every stream and request carries."""
        return speech.RecognitionConfig(
            encoding=speech.RecognitionConfig.AudioEncoding[self.encoding],
            sample_rate_hertz=SAMPLE_RATE,
            audio_channel_count=1,
            language_code=self.language,
            model=self.model,
            use_enhanced=True,
            # Word times put every stream's words on one timeline: de-duplication needs them.
            enable_word_time_offsets=True,
            max_alternatives=1,
        )

    def streaming_config(self) -> speech.StreamingRecognitionConfig:
        """Build the StreamingRecognitionConfig (interim results on, continuous)."""
        return speech.StreamingRecognitionConfig(
            config=self.recognition_config(), interim_results=True, single_utterance=False
        )


# --- engine -------------------------------------------------------------------------------------


class GoogleSttEngine(SttEngine):
    """STT_ENGINE=google: credentials and endpoint health shared by all calls of the process."""

    name = "google"

    def __init__(
        self,
        config: GoogleSttConfig,
        *,
        credentials: object | None = None,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.language = config.language
        self.clock = clock
        self.rand = rand
        self._credentials = credentials
        self._lock = threading.Lock()
        self._refused: dict[str, float] = {}  # endpoint -> clock() when it refused
        self._shared: tuple[speech.SpeechClient, Callable[[], None]] | None = None
        self.sessions_opened = 0
        # The library's default retry runs for up to 5000 s: far too long for a phone call.
        self.recognize_retry = retries.Retry(
            initial=0.1,
            maximum=1.0,
            multiplier=2.0,
            predicate=retries.if_exception_type(
                core_exceptions.ServiceUnavailable, core_exceptions.DeadlineExceeded
            ),
            timeout=config.recognize_timeout_s,
        )

    @classmethod
    def from_settings(cls) -> GoogleSttEngine:
        """Build the engine from Django settings."""
        return cls(GoogleSttConfig.from_settings())

    def warm_up(self) -> None:
        """Resolve credentials at start-up, so the first call does not wait for them."""
        self._resolve_credentials()

    def _resolve_credentials(self) -> object:
        with self._lock:
            if self._credentials is None:
                if self.config.insecure:
                    self._credentials = AnonymousCredentials()
                else:
                    import google.auth

                    self._credentials, _project = google.auth.default(
                        scopes=["https://www.googleapis.com/auth/cloud-platform"]
                    )
            return self._credentials

    def make_client(self, endpoint: str) -> tuple[speech.SpeechClient, Callable[[], None]]:
        """Return a client on its own channel to `endpoint`, and the function that closes it."""
        credentials = self._resolve_credentials()
        if self.config.insecure:
            # As Google's other emulators: plaintext gRPC, anonymous credentials.
            transport = SpeechGrpcTransport(
                channel=grpc.insecure_channel(endpoint), credentials=credentials
            )
            client = speech.SpeechClient(transport=transport)
        else:
            client = speech.SpeechClient(
                credentials=credentials, client_options={"api_endpoint": endpoint}
            )
        return client, client.transport.close

    def endpoints(self) -> list[str]:
        """Return the configured endpoints in order, those refused lately left out."""
        now = self.clock()
        with self._lock:
            return [
                e
                for e in self.config.endpoints
                if now - self._refused.get(e, -REFUSAL_TTL_S) >= REFUSAL_TTL_S
            ]

    def refuse(self, endpoint: str, reason: str) -> None:
        """Remember that `endpoint` refused this engine's requests (new sessions skip it)."""
        with self._lock:
            self._refused[endpoint] = self.clock()
        logger.warning("google speech endpoint %s refused: %s", endpoint, reason)

    def open(
        self, call_sid: str, on_hypothesis: HypothesisSink, *, on_event: EventSink | None = None
    ) -> GoogleSttSession:
        """Open a session and start its thread; returns at once (the stream opens behind it)."""
        with self._lock:
            self.sessions_opened += 1
        session = GoogleSttSession(self, call_sid, on_hypothesis, on_event=on_event)
        session.start()
        return session

    def recognize(self, audio: bytes) -> str:
        """Recognize one utterance (8 kHz mu-law) with a single request; blocks, so off the loop."""
        with self._lock:
            shared = self._shared
        if shared is None:
            endpoints = self.endpoints() or list(self.config.endpoints)
            shared = self.make_client(endpoints[0])
            with self._lock:
                if self._shared is None:
                    self._shared = shared
                else:
                    shared[1]()
                    shared = self._shared
        if self.config.encoding == "LINEAR16":
            audio = ulaw_to_pcm16(audio)
        response = shared[0].recognize(
            config=self.config.recognition_config(),
            audio=speech.RecognitionAudio(content=audio),
            retry=self.recognize_retry,
            timeout=self.config.recognize_timeout_s,
        )
        texts = (r.alternatives[0].transcript.strip() for r in response.results if r.alternatives)
        return " ".join(t for t in texts if t)

    async def recognize_async(self, audio: bytes) -> str:
        """Recognize one utterance in the loop's executor: the event loop never waits on Google."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.recognize, audio)


# --- session ------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Stream:
    index: int
    start: int  # timeline offset of its first audio byte
    start_ms: float
    opened_at: float
    replay: bytes
    client: speech.SpeechClient
    endpoint: str
    sent: int = 0  # bytes taken for it, replay included
    replayed: int = 0  # bytes of replay it started with
    responses: int = 0
    quiet: bool = True  # no interim since its last final: nobody is mid-sentence
    retired_at_ms: float | None = None  # timeline end of its audio once retired
    ended: bool = False
    error: BaseException | None = None
    # Words other streams published that this one heard too; stripped from its interims.
    known: list[TimedWord] = field(default_factory=list)
    thread: threading.Thread | None = None


@dataclass(frozen=True, slots=True)
class _Segment:
    utterance: int
    start: int  # timeline offsets
    end: int
    audio: bytes


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
        self._sample_bytes = 2 if cfg.encoding == "LINEAR16" else 1
        self._batch_frames = max(1, cfg.batch_ms // FRAME_MS)
        self._catch_up_frames = max(self._batch_frames, CATCH_UP_REQUEST_MS // FRAME_MS)
        self._streaming_config = cfg.streaming_config()
        self._recognition_config = cfg.recognition_config()

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
        self.finals = 0
        self.recognize_requests = 0
        self.endpoint_fallbacks = 0
        self.mode = "streaming"  # or "single-request"

        # The timeline: audio taken so far, the recent part kept for replays.
        self._history = bytearray()
        self._hist_base = 0  # timeline offset of _history[0]
        self._taken = 0  # timeline offset of the next byte taken
        self._cut_ms = 0.0  # end of what is published: the de-duplication cut and replay start
        self._last_interim = ""

        # Local VAD: marks wait for their frame to be taken, then get a timeline offset.
        self._marks: deque[tuple[str, int, int]] = deque()  # (kind, utterance, frame seq)
        self._vad: OrderedDict[int, list[int | None]] = OrderedDict()  # n -> [start, end]
        self._in_speech = False
        self._submitted: set[int] = set()
        self._submitted_until = 0

        self._endpoints = engine.endpoints()
        self._endpoint_index = 0
        self._endpoint_served = False
        self._client: speech.SpeechClient | None = None
        self._closers: list[Callable[[], None]] = []
        self._streams: list[_Stream] = []
        self._recognizer: threading.Thread | None = None
        self._segments: queue.Queue[_Segment | None] = queue.Queue(RECOGNIZE_QUEUE)
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
            self._audio.notify_all()

    def speech_started(self, utterance: int) -> None:
        """Note where the local VAD heard speech begin (the frame about to be written)."""
        with self._lock:
            self._in_speech = True
            self._marks.append(("start", utterance, self.frames_in))

    def speech_ended(self, utterance: int) -> None:
        """Note where the local VAD heard speech end; a quiet moment suits a rotation."""
        with self._lock:
            self._in_speech = False
            self._marks.append(("end", utterance, self.frames_in))
            self._audio.notify_all()
            self._state.notify_all()

    # --- counters -------------------------------------------------------------------------------

    @property
    def frames_pending(self) -> int:
        """Frames written but not yet taken by the engine."""
        with self._lock:
            return len(self._queue)

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
                "finals": self.finals,
                "recognize_requests": self.recognize_requests,
                "endpoint_fallbacks": self.endpoint_fallbacks,
                "mode": self.mode,
            }

    # --- taking audio (lock held) ---------------------------------------------------------------

    def _take(self, count: int) -> bytes:
        """Move `count` frames from the queue onto the timeline; return their bytes."""
        chunks = []
        offset = self._taken
        for _ in range(count):
            seq, frame = self._queue.popleft()
            while self._marks and self._marks[0][2] <= seq:
                kind, utterance, _seq = self._marks.popleft()
                self._resolve_mark(kind, utterance, offset)
            data = ulaw_to_pcm16(frame) if self._sample_bytes == 2 else frame
            chunks.append(data)
            offset += len(data)
        audio = b"".join(chunks)
        self._history += audio
        self._taken = offset
        self.frames_written += count
        keep_ms = MAX_SEGMENT_MS if self.mode == "single-request" else self.config.replay_max_ms
        excess = self._taken - keep_ms * self._bpm - self._hist_base
        if excess > TRIM_SLACK_BYTES:
            del self._history[:excess]
            self._hist_base += excess
        return audio

    def _resolve_mark(self, kind: str, utterance: int, offset: int) -> None:
        if kind == "start":
            self._vad[utterance] = [offset, None]
            while len(self._vad) > MAX_VAD_UTTERANCES:
                forgotten, _span = self._vad.popitem(last=False)
                self._submitted.discard(forgotten)
        elif utterance in self._vad:
            self._vad[utterance][1] = offset

    def _cut_offset(self) -> int:
        """Timeline offset of the cut, on a sample boundary, within the kept history."""
        offset = int(self._cut_ms * self._bpm) // self._sample_bytes * self._sample_bytes
        return min(max(offset, self._hist_base), self._taken)

    # --- streams --------------------------------------------------------------------------------

    def _requests(self, stream: _Stream) -> Iterator[speech.StreamingRecognizeRequest]:
        """Yield the replay, then live audio in BATCH_MS batches, until the stream is let go."""
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

    def _next_batch(self, stream: _Stream) -> bytes | None:
        """Wait for a batch of frames (or a backlog); None once the stream no longer owns them."""
        batch_s = self.config.batch_ms / 1000
        # A lone frame waits this long for its partner: the RX thread may run up to one
        # batch late before it resyncs, and a frame must not wait for ever when writes stop.
        lone_wait_s = 2 * batch_s
        waiting_since: float | None = None
        with self._lock:
            while True:
                if self._owner is not stream:
                    return None
                n = len(self._queue)
                flush = self._closing or (
                    waiting_since is not None and self._clock() - waiting_since >= lone_wait_s
                )
                if n >= self._batch_frames or (n and flush):
                    # Live audio goes one batch per request; a backlog goes in bigger requests.
                    limit = self._catch_up_frames if n > self._batch_frames else self._batch_frames
                    audio = self._take(min(n, limit))
                    stream.sent += len(audio)
                    self._count_request(len(audio))
                    return audio
                if self._closing:
                    return None  # everything is sent: half-close
                if n and waiting_since is None:
                    # Half a batch: send it anyway if the next frame is late (no final waits).
                    waiting_since = self._clock()
                self._audio.wait(timeout=batch_s if n else 0.5)

    def _open_stream(self) -> _Stream:
        assert self._client is not None
        with self._lock:
            start = self._cut_offset()
            if start > int(self._cut_ms * self._bpm) + self._sample_bytes:
                logger.warning(
                    "call=%s replay capped: %.0f ms of unfinalized audio not replayed",
                    self.call_sid,
                    start / self._bpm - self._cut_ms,
                )
            replay = bytes(self._history[start - self._hist_base :])
            stream = _Stream(
                index=self.streams_opened,
                start=start,
                start_ms=start / self._bpm,
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
        logger.debug(
            "call=%s stream %d opened at %.0f ms (replay %d ms) on %s",
            self.call_sid,
            stream.index,
            stream.start_ms,
            len(replay) // self._bpm,
            stream.endpoint,
        )
        return stream

    def _read(self, stream: _Stream) -> None:
        """Read one stream's responses until Google (or a hard stop) ends it."""
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
            stream.error = error
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
                self._state.wait(timeout=SUPERVISE_POLL_S)

    def _retire(self, stream: _Stream) -> None:
        """Let the stream go: it half-closes, delivers its last final, and ends."""
        with self._lock:
            stream.retired_at_ms = stream.start_ms + stream.sent / self._bpm
            if self._owner is stream:
                self._owner = None
            self._audio.notify_all()
            self.rotations += 1
        self._event(
            "stt_rotation", f"stream {stream.index} retired at {stream.retired_at_ms:.0f} ms"
        )

    # --- results --------------------------------------------------------------------------------

    def _on_response(self, stream: _Stream, response: speech.StreamingRecognizeResponse) -> None:
        if not response.results:
            return
        out: list[Hypothesis] = []
        with self._emit_lock:
            with self._lock:
                if self._closed:
                    return
                stream.responses += 1
                self._endpoint_served = True
                interims = []
                for result in response.results:
                    if result.is_final:
                        text = self._accept_final(stream, result)
                        if text:
                            self._last_interim = ""
                            out.append(Hypothesis(text, True))
                    else:
                        interims.append(result)
                stream.quiet = not interims
                if interims and stream.retired_at_ms is None:
                    text = self._interim_text(stream, interims)
                    if text and text != self._last_interim:
                        self._last_interim = text
                        out.append(Hypothesis(text, False))
                self._state.notify_all()
            for hypothesis in out:
                self._publish(hypothesis)

    def _accept_final(self, stream: _Stream, result: speech.StreamingRecognitionResult) -> str:
        """De-duplicate a final against what is published; move the cut; return its new text."""
        alt = result.alternatives[0] if result.alternatives else None
        end_ms = stream.start_ms + _ms(result.result_end_time)
        words = [
            TimedWord(
                w.word, stream.start_ms + _ms(w.start_time), stream.start_ms + _ms(w.end_time)
            )
            for w in (alt.words if alt is not None else [])
        ]
        stream.known = [w for w in stream.known if w.mid_ms > end_ms]
        if alt is None or not alt.transcript.strip():
            return ""
        if not words:
            # No word times: all or nothing, by where the result ends.
            if end_ms <= self._cut_ms:
                return ""
            self._advance_cut(end_ms, [], stream)
            return alt.transcript.strip()
        whole = len(words)
        if stream.retired_at_ms is not None:
            words = [w for w in words if w.end_ms < stream.retired_at_ms - TRUNCATION_GUARD_MS]
        kept = words_after(words, self._cut_ms)
        if not kept:
            return ""
        # A retired stream's final ends where its kept words end: what follows is the next
        # stream's to tell. A live stream's final covers its whole result.
        cut = kept[-1].end_ms if stream.retired_at_ms is not None else max(end_ms, kept[-1].end_ms)
        self._advance_cut(cut, kept, stream)
        return alt.transcript.strip() if len(kept) == whole else " ".join(w.text for w in kept)

    def _advance_cut(self, cut_ms: float, kept: list[TimedWord], source: _Stream | None) -> None:
        self._cut_ms = max(self._cut_ms, cut_ms)
        self.finals += 1
        for other in self._streams:
            if other is not source and not other.ended and other.retired_at_ms is None:
                other.known.extend(w for w in kept if w.mid_ms > other.start_ms)

    def _interim_text(
        self, stream: _Stream, results: list[speech.StreamingRecognitionResult]
    ) -> str:
        texts = (r.alternatives[0].transcript.strip() for r in results if r.alternatives)
        words = " ".join(t for t in texts if t).split()
        if stream.known:
            known = [w.text for w in stream.known]
            if words[: len(known)] == known:
                words = words[len(known) :]
            elif known[: len(words)] == words:
                words = []
            else:
                return ""  # cannot tell the new words from the published ones: wait for a final
        return " ".join(words)

    def _publish(self, hypothesis: Hypothesis) -> None:
        try:
            self._on_hypothesis(hypothesis)
        except Exception:
            logger.exception("call=%s hypothesis sink failed", self.call_sid)

    def _event(self, kind: str, detail: str) -> None:
        logger.info("call=%s %s: %s", self.call_sid, kind, detail)
        if self._on_event is not None:
            try:
                self._on_event(kind, detail)
            except Exception:
                logger.exception("call=%s event sink failed", self.call_sid)

    # --- the driver -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._drive()
        except Exception as exc:
            logger.exception("call=%s Google STT driver failed", self.call_sid)
            self._event("stt_error", describe(exc))

    def _drive(self) -> None:
        failures = 0
        wait_for_audio = False
        if not self._endpoints:
            self._endpoints = [self.config.endpoints[0]]
            self._enter_single_request("every endpoint refused streaming lately")
        while not self._closing:
            if self.mode == "single-request":
                self._ensure_client()
                self._pump(until=None)
                return
            if wait_for_audio and not self._wait_for_audio():
                return
            wait_for_audio = False
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
                self._retire(stream)
                continue
            if stream.responses:
                failures = 0
            fault = classify(stream.error)
            reason = describe(stream.error)
            if fault is Fault.DURATION:
                with self._lock:
                    self.rotations += 1
                self._event("stt_rotation", f"stream {stream.index} ended by Google ({reason})")
                continue
            if fault is Fault.REFUSED and not self._endpoint_served:
                self._fall_back(stream.endpoint, reason)
                continue
            failures += 1
            with self._lock:
                self.reconnects += 1
            self._event("stt_reconnect", f"stream {stream.index}: {reason} (attempt {failures})")
            if fault is Fault.AUDIO_TIMEOUT:
                wait_for_audio = True  # a new stream now would time out the same way
                continue
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
            logger.exception("call=%s cannot make a client for %s", self.call_sid, endpoint)
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

    # --- single requests ------------------------------------------------------------------------

    def _pump(self, until: float | None) -> None:
        """Own the queue: keep the timeline, send each VAD-cut utterance to `recognize`."""
        if self._recognizer is None:
            self._recognizer = threading.Thread(
                target=self._recognize_loop, name=f"stt-recognize-{self.call_sid}", daemon=True
            )
            self._recognizer.start()
        with self._lock:
            self._owner = _PUMP
            try:
                while True:
                    if self._queue:
                        self._take(len(self._queue))
                    if self._closing:
                        # The call is over: pending marks belong to audio already taken, and
                        # an utterance still open ends here.
                        while self._marks:
                            kind, utterance, _seq = self._marks.popleft()
                            self._resolve_mark(kind, utterance, self._taken)
                        for span in self._vad.values():
                            if span[1] is None:
                                span[1] = self._taken
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
        for utterance, (start, end) in self._vad.items():
            if end is None or utterance in self._submitted:
                continue
            self._submitted.add(utterance)
            first = max(
                start - PREROLL_MS * self._bpm,
                self._cut_offset(),
                self._submitted_until,
                end - MAX_SEGMENT_MS * self._bpm,
                self._hist_base,
            )
            first -= first % self._sample_bytes
            if end <= first:
                continue  # a streaming final already covers it
            self._submitted_until = end
            segment = _Segment(
                utterance,
                first,
                end,
                bytes(self._history[first - self._hist_base : end - self._hist_base]),
            )
            try:
                self._segments.put_nowait(segment)
            except queue.Full:
                logger.warning(
                    "call=%s recognize queue full: utterance %d not recognized",
                    self.call_sid,
                    utterance,
                )

    def _recognize_loop(self) -> None:
        while True:
            segment = self._segments.get()
            if segment is None:
                return
            self._recognize(segment)

    def _recognize(self, segment: _Segment) -> None:
        client = self._client
        if client is None:
            return
        try:
            response = client.recognize(
                config=self._recognition_config,
                audio=speech.RecognitionAudio(content=segment.audio),
                retry=self.engine.recognize_retry,
                timeout=self.config.recognize_timeout_s,
            )
        except Exception as exc:
            self._event("stt_recognize_failed", f"utterance {segment.utterance}: {describe(exc)}")
            return
        start_ms = segment.start / self._bpm
        words: list[TimedWord] = []
        texts: list[str] = []
        for result in response.results:
            if not result.alternatives:
                continue
            alt = result.alternatives[0]
            texts.append(alt.transcript.strip())
            words.extend(
                TimedWord(w.word, start_ms + _ms(w.start_time), start_ms + _ms(w.end_time))
                for w in alt.words
            )
        with self._emit_lock:
            with self._lock:
                self.recognize_requests += 1
                if self._closed:
                    return
                if words:
                    kept = words_after(words, self._cut_ms)
                    text = " ".join(w.text for w in kept)
                else:
                    kept = []
                    text = " ".join(t for t in texts if t)
                self._advance_cut(segment.end / self._bpm, kept, None)
                self._last_interim = ""
            if text:
                self._publish(Hypothesis(text, True, utterance=segment.utterance))

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
        if self._recognizer is not None:
            with contextlib.suppress(queue.Full):
                self._segments.put(None, timeout=max(0.0, soft - time.monotonic()))
            self._recognizer.join(max(0.0, soft - time.monotonic()))
        with self._lock:
            closers, self._closers = self._closers, []
        for closer in closers:
            try:
                closer()
            except Exception:
                logger.exception("call=%s closing a Google channel failed", self.call_sid)
        self._driver.join(max(0.0, deadline - time.monotonic()))
        for stream in list(self._streams):
            if stream.thread is not None:
                stream.thread.join(max(0.0, deadline - time.monotonic()))
        if self._recognizer is not None:
            while True:  # a recognizer stuck behind a full queue: make room for its stop
                try:
                    self._segments.get_nowait()
                except queue.Empty:
                    break
            self._segments.put_nowait(None)
            self._recognizer.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._closed = True
            # Audio no stream or request took: lost, so counted.
            self.frames_dropped += len(self._queue)
            self._queue.clear()
        alive = self.alive_threads()
        if alive:
            logger.warning("call=%s Google STT threads still alive: %s", self.call_sid, alive)
        logger.info("call=%s Google STT closed: %s", self.call_sid, self.stats())

    def alive_threads(self) -> list[str]:
        """Names of this session's threads still running (none after `close`)."""
        threads = [self._driver, self._recognizer, *(s.thread for s in self._streams)]
        return [t.name for t in threads if t is not None and t.is_alive()]
