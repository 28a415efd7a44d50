"""A fake Google Cloud Speech-to-Text v1 server on loopback, for the real client library.

It holds to Google's rules where the product depends on them:
- a stream's first request carries only `streaming_config`, later ones only audio, and no request
  more than `max_request_bytes` of audio (INVALID_ARGUMENT otherwise);
- a stream lives at most `stream_limit_s` (OUT_OF_RANGE "Exceeded maximum allowed stream
  duration"), or holds at most `stream_audio_limit_s` of audio when set (the same status: a
  replayed backlog counts), and `audio_timeout_s` without audio ends it (OUT_OF_RANGE "Audio
  Timeout Error");
- half-close finalizes what was heard, then the stream ends OK; a stream ended by an error loses
  what it had not finalized;
- languages and models it does not serve are refused with INVALID_ARGUMENT;
- faults can be injected: a status at open or after some audio, or a silent drop, for the next
  stream or (`end_open_streams`) for those open now;
- `bare_finals`: finals carry neither `result_end_time` nor word offsets (legal, and seen).

Transcripts come from the audio received. Scripted audio (`speak`) codes each word as a run of
one mu-law byte value and silence as 0xFF; the decoder turns runs back into words with their
times. A client that loses, repeats or shifts audio gets a different transcript, with words at
different times.

With a `TimingPlan` the fake stops answering politely: each stream answers on a schedule drawn
(seeded) from `recognizer_timing`: interims early, often repeated, late finals, finals with and
without times, streams ended at any point (see `_TimedStream`).
"""

from __future__ import annotations

import audioop  # deprecated in 3.12, removed in 3.13; the machines run 3.11
import itertools
import queue
import random
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import grpc
from google.cloud import speech_v1 as speech

from tests.fakes import recognizer_timing as rt
from tests.fakes.grpc_server import LoopbackGrpcServer

BYTES_PER_MS = 8  # 8 kHz mu-law
MAX_REQUEST_BYTES = 25 * 1024  # Google: at most 25 KB of audio per streaming request
MAX_SYNC_MS = 60_000  # Google: `recognize` takes at most one minute of audio
SILENCE = 0xFF

# Words the fake "recognizes"; word i is spoken as a run of mu-law byte WORD_CODE_BASE + i.
VOCABULARY = (
    "שלום", "אני", "רוצה", "לקבוע", "תור", "לרופא", "מחר", "בבוקר", "תודה", "רבה",
    "כן", "לא", "אולי", "בערב", "היום", "עכשיו", "אפשר", "לדבר", "עם", "נציג",
    "מה", "השעה", "איפה", "הסניף", "הקרוב", "בבקשה", "סליחה", "שוב", "מספר", "טלפון",
    "אחת", "שתיים", "שלוש", "ארבע", "חמש", "שש", "שבע", "שמונה", "תשע", "עשר",
)  # fmt: skip
WORD_CODE_BASE = 0x10
_CODE_TO_WORD = {WORD_CODE_BASE + i: w for i, w in enumerate(VOCABULARY)}

DURATION_DETAILS = "Exceeded maximum allowed stream duration of {limit:g} seconds."
AUDIO_TIMEOUT_DETAILS = (
    "Audio Timeout Error: Long duration elapsed without audio. "
    "Audio should be sent close to real time."
)


# A caller booking an appointment, four utterances: the script most tests speak and expect back.
APPOINTMENT_SCRIPT = [
    ["שלום", "אני", "רוצה", "לקבוע", "תור"],
    ["לרופא", "מחר", "בבוקר"],
    ["איפה", "הסניף", "הקרוב"],
    ["תודה", "רבה"],
]


def speak(
    utterances: list[list[str]],
    *,
    word_ms: int = 200,
    gap_ms: int = 60,
    pause_ms: int = 900,
    lead_ms: int = 300,
) -> bytes:
    """Render scripted utterances as mu-law audio the fake decodes back to the same words."""
    silence = bytes([SILENCE])
    out = bytearray(silence * (lead_ms * BYTES_PER_MS))
    for utterance in utterances:
        for i, word in enumerate(utterance):
            if i:
                out += silence * (gap_ms * BYTES_PER_MS)
            out += bytes([WORD_CODE_BASE + VOCABULARY.index(word)]) * (word_ms * BYTES_PER_MS)
        out += silence * (pause_ms * BYTES_PER_MS)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start_ms: float
    end_ms: float


@dataclass(frozen=True, slots=True)
class Result:
    is_final: bool
    words: tuple[Word, ...]
    end_ms: float | None  # Google's result_end_time on this stream (None: not sent)
    offsets: bool = True  # a final's word times are sent (when the config asks for them)

    @property
    def transcript(self) -> str:
        return " ".join(w.text for w in self.words)


class Decoder:
    """Turn scripted audio into interim results per word and finals after `endpoint_ms` silence."""

    def __init__(self, *, endpoint_ms: int = 500, min_word_ms: int = 60) -> None:
        self.endpoint_bytes = endpoint_ms * BYTES_PER_MS
        self.min_word_bytes = min_word_ms * BYTES_PER_MS
        self.pos = 0
        self._code: int | None = None  # current run: a word code, or None for silence
        self._run_start = 0
        self._pending: list[Word] = []
        self._last_word_end = 0

    def feed(self, audio: bytes) -> list[Result]:
        """Take the next audio bytes; return the results they complete."""
        out: list[Result] = []
        for byte, run in itertools.groupby(audio):
            code = byte if byte in _CODE_TO_WORD else None
            if code != self._code:
                out.extend(self._close_run())
                self._code = code
                self._run_start = self.pos
            self.pos += sum(1 for _ in run)
            if (
                self._code is None
                and self._pending
                and self.pos - self._last_word_end >= self.endpoint_bytes
            ):
                # Endpoint at a fixed distance after the last word: the same audio gives the
                # same final time however it was cut into requests.
                out.append(self._final(self._last_word_end + self.endpoint_bytes))
        return out

    def finish(self) -> list[Result]:
        """End of audio (half-close): finalize what was heard, a cut-off word included."""
        out = self._close_run()
        if self._pending:
            out.append(self._final(self.pos))
        return out

    def _close_run(self) -> list[Result]:
        if self._code is None or self.pos - self._run_start < self.min_word_bytes:
            return []
        word = Word(
            _CODE_TO_WORD[self._code], self._run_start / BYTES_PER_MS, self.pos / BYTES_PER_MS
        )
        self._pending.append(word)
        self._last_word_end = self.pos
        return [Result(False, tuple(self._pending), self.pos / BYTES_PER_MS)]

    def _final(self, end_bytes: int) -> Result:
        result = Result(True, tuple(self._pending), end_bytes / BYTES_PER_MS)
        self._pending = []
        return result


def _duration(ms: float) -> timedelta:
    return timedelta(milliseconds=ms)


def _alternative(result: Result, *, with_words: bool) -> speech.SpeechRecognitionAlternative:
    words = (
        [
            speech.WordInfo(
                word=w.text, start_time=_duration(w.start_ms), end_time=_duration(w.end_ms)
            )
            for w in result.words
        ]
        if with_words and result.is_final and result.offsets
        else []
    )
    return speech.SpeechRecognitionAlternative(
        transcript=result.transcript, confidence=0.92 if result.is_final else 0.0, words=words
    )


@dataclass
class Fault:
    """What goes wrong with a stream: a status (or a silent drop when `code` is None)."""

    code: grpc.StatusCode | None
    details: str = ""
    after_audio_ms: int = 0  # 0: at once, before the config is even read


@dataclass
class StreamLog:
    """What one stream received and how it ended, for tests to check."""

    index: int
    opened_at: float
    config: speech.StreamingRecognitionConfig | None = None
    request_sizes: list[int] = field(default_factory=list)
    request_times: list[float] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    finals: list[Result] = field(default_factory=list)
    outcome: str = "open"  # ok | empty | <status code name>: <details>

    @property
    def audio_ms(self) -> float:
        return len(self.audio) / BYTES_PER_MS


@dataclass
class RecognizeLog:
    config: speech.RecognitionConfig
    audio: bytes
    outcome: str = "ok"


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class _Drop(Exception):
    """End the stream at once with status OK and no final: a connection that just went away."""


_END = object()


class FakeSpeechServer(LoopbackGrpcServer):
    """Google's Speech v1 `StreamingRecognize` and `Recognize` on 127.0.0.1, plaintext gRPC."""

    service = "google.cloud.speech.v1.Speech"
    max_workers = 32  # each open stream holds a worker
    thread_name_prefix = "fake-speech"

    def __init__(
        self,
        *,
        stream_limit_s: float = 305.0,
        stream_audio_limit_s: float | None = None,
        audio_timeout_s: float = 10.0,
        endpoint_ms: int = 500,
        min_word_ms: int = 60,
        languages: tuple[str, ...] = ("he-IL", "en-US"),
        refused_models: tuple[str, ...] = (),
        refuse_streaming: bool = False,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        recognize_delay_s: float = 0.0,
        bare_finals: bool = False,
        timing: TimingPlan | None = None,
    ) -> None:
        super().__init__()
        self.stream_limit_s = stream_limit_s
        self.stream_audio_limit_s = stream_audio_limit_s
        self.audio_timeout_s = audio_timeout_s
        self.endpoint_ms = endpoint_ms
        self.min_word_ms = min_word_ms
        self.languages = languages
        self.refused_models = refused_models
        self.refuse_streaming = refuse_streaming
        self.max_request_bytes = max_request_bytes
        self.recognize_delay_s = recognize_delay_s
        self.bare_finals = bare_finals
        self.timing = timing
        self.stream_ends_used: set[int] = set()  # the plan's stream ends, each ends one stream
        self.streams: list[StreamLog] = []
        self.recognitions: list[RecognizeLog] = []
        self._stream_faults: list[Fault] = []
        self._recognize_faults: list[Fault] = []
        self._ending: dict[int, Fault] = {}  # open stream index -> how it ends at its next audio
        self._lock = threading.Lock()

    # --- control, from tests ---------------------------------------------------------------------

    def fail_stream(
        self, code: grpc.StatusCode | None, details: str = "", *, after_audio_ms: int = 0
    ) -> None:
        """Make the next stream fail with `code` (None: a silent drop) after some audio."""
        with self._lock:
            self._stream_faults.append(Fault(code, details, after_audio_ms))

    def end_open_streams(self, code: grpc.StatusCode | None, details: str = "") -> None:
        """End every stream open now with `code` (None: a silent drop) at the next audio it gets."""
        with self._lock:
            for log in self.streams:
                if log.outcome == "open":
                    self._ending[log.index] = Fault(code, details)

    def fail_recognize(self, code: grpc.StatusCode, details: str = "") -> None:
        """Make the next `Recognize` call fail with `code`."""
        with self._lock:
            self._recognize_faults.append(Fault(code, details))

    def finals(self) -> list[Result]:
        """Every final the server sent, stream by stream."""
        with self._lock:
            return [r for log in self.streams for r in log.finals]

    # --- the RPCs ---------------------------------------------------------------------------------

    def _methods(self) -> dict[str, grpc.RpcMethodHandler]:
        return {
            "StreamingRecognize": grpc.stream_stream_rpc_method_handler(
                self._streaming_recognize,
                request_deserializer=speech.StreamingRecognizeRequest.deserialize,
                response_serializer=speech.StreamingRecognizeResponse.serialize,
            ),
            "Recognize": grpc.unary_unary_rpc_method_handler(
                self._recognize,
                request_deserializer=speech.RecognizeRequest.deserialize,
                response_serializer=speech.RecognizeResponse.serialize,
            ),
        }

    def _check_config(self, config: speech.RecognitionConfig) -> None:
        if config.language_code not in self.languages:
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Invalid recognition 'config': bad language code {config.language_code!r}.",
            )
        if config.model and config.model in self.refused_models:
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "The requested model is currently not supported for language : "
                f"{config.language_code}.",
            )
        encoding = speech.RecognitionConfig.AudioEncoding
        if config.encoding not in (encoding.MULAW, encoding.LINEAR16):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "This fake decodes MULAW and LINEAR16.")
        if not 8000 <= config.sample_rate_hertz <= 48000:
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "sample_rate_hertz must be between 8000 and 48000.",
            )

    def _streaming_recognize(
        self,
        request_iterator: Iterator[speech.StreamingRecognizeRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[speech.StreamingRecognizeResponse]:
        with self._lock:
            log = StreamLog(index=len(self.streams), opened_at=time.monotonic())
            self.streams.append(log)
            fault = self._stream_faults.pop(0) if self._stream_faults else None
        try:
            yield from self._run_stream(log, fault, request_iterator)
        except _Drop:
            return
        except _Abort as abort:
            log.outcome = f"{abort.code.name}: {abort.details}"
            context.abort(abort.code, abort.details)

    def _run_stream(
        self,
        log: StreamLog,
        fault: Fault | None,
        request_iterator: Iterator[speech.StreamingRecognizeRequest],
    ) -> Iterator[speech.StreamingRecognizeResponse]:
        if fault is not None and fault.after_audio_ms == 0:
            self._fault(log, fault)
        inbox: queue.Queue = queue.Queue()

        def read_requests() -> None:
            # gRPC hands requests over as they arrive; reading them in a thread lets the
            # stream notice time passing without audio (Audio Timeout) and its duration limit.
            try:
                for request in request_iterator:
                    inbox.put(request)
            except Exception:  # the RPC ended under us (client cancelled, server stopped)
                pass
            finally:
                inbox.put(_END)

        threading.Thread(
            target=read_requests, name=f"fake-speech-in-{log.index}", daemon=True
        ).start()
        first = self._next(log, inbox)
        if first is _END:
            log.outcome = "empty"
            return
        if _which(first) != "streaming_config":
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "The first StreamingRecognizeRequest must carry streaming_config only.",
            )
        log.config = first.streaming_config
        config = first.streaming_config.config
        self._check_config(config)
        if self.refuse_streaming:
            raise _Abort(
                grpc.StatusCode.PERMISSION_DENIED, "Streaming recognition is not enabled here."
            )
        linear16 = config.encoding == speech.RecognitionConfig.AudioEncoding.LINEAR16
        with_words = config.enable_word_time_offsets
        interim = first.streaming_config.interim_results
        decoder: Decoder | _TimedStream
        if self.timing is not None:
            decoder = _TimedStream(self, log, self.timing)
        else:
            decoder = Decoder(endpoint_ms=self.endpoint_ms, min_word_ms=self.min_word_ms)
        while True:
            request = self._next(log, inbox)
            if request is _END:
                results = decoder.finish()
                log.outcome = "ok"
                yield from self._respond(log, results, with_words, interim, config.language_code)
                return
            if _which(request) != "audio_content":
                raise _Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "Only the first StreamingRecognizeRequest may carry streaming_config.",
                )
            audio = request.audio_content
            if len(audio) > self.max_request_bytes:
                raise _Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Request audio exceeds the limit of {self.max_request_bytes} bytes.",
                )
            if linear16:
                audio = audioop.lin2ulaw(audio, 2)
            log.request_sizes.append(len(request.audio_content))
            log.request_times.append(time.monotonic())
            log.audio += audio
            limit_s = self.stream_audio_limit_s
            if limit_s is not None and log.audio_ms > limit_s * 1000:
                raise _Abort(grpc.StatusCode.OUT_OF_RANGE, DURATION_DETAILS.format(limit=limit_s))
            if fault is not None and log.audio_ms >= fault.after_audio_ms:
                self._fault(log, fault)
            with self._lock:
                ending = self._ending.pop(log.index, None)
            if ending is not None:
                self._fault(log, ending)
            results = decoder.feed(audio)
            yield from self._respond(log, results, with_words, interim, config.language_code)

    def _next(self, log: StreamLog, inbox: queue.Queue) -> object:
        age = time.monotonic() - log.opened_at
        if age >= self.stream_limit_s:
            raise _Abort(
                grpc.StatusCode.OUT_OF_RANGE, DURATION_DETAILS.format(limit=self.stream_limit_s)
            )
        try:
            return inbox.get(timeout=min(self.audio_timeout_s, self.stream_limit_s - age))
        except queue.Empty:
            if time.monotonic() - log.opened_at >= self.stream_limit_s:
                raise _Abort(
                    grpc.StatusCode.OUT_OF_RANGE,
                    DURATION_DETAILS.format(limit=self.stream_limit_s),
                ) from None
            raise _Abort(grpc.StatusCode.OUT_OF_RANGE, AUDIO_TIMEOUT_DETAILS) from None

    def _fault(self, log: StreamLog, fault: Fault) -> None:
        if fault.code is None:
            log.outcome = "dropped"
            raise _Drop
        raise _Abort(fault.code, fault.details or fault.code.name.lower())

    def _respond(
        self,
        log: StreamLog,
        results: list[Result],
        with_words: bool,
        interim: bool,
        language: str,
    ) -> Iterator[speech.StreamingRecognizeResponse]:
        for result in results:
            if not result.is_final and not interim:
                continue
            bare = result.is_final and self.bare_finals
            if result.is_final:
                log.finals.append(result)
            yield speech.StreamingRecognizeResponse(
                results=[
                    speech.StreamingRecognitionResult(
                        alternatives=[_alternative(result, with_words=with_words and not bare)],
                        is_final=result.is_final,
                        stability=0.0 if result.is_final else 0.9,
                        result_end_time=(
                            None if bare or result.end_ms is None else _duration(result.end_ms)
                        ),
                        language_code=language.lower(),
                    )
                ]
            )

    def _recognize(
        self, request: speech.RecognizeRequest, context: grpc.ServicerContext
    ) -> speech.RecognizeResponse:
        audio = request.audio.content
        log = RecognizeLog(config=request.config, audio=audio)
        with self._lock:
            self.recognitions.append(log)
            fault = self._recognize_faults.pop(0) if self._recognize_faults else None
        try:
            if fault is not None and fault.code is not None:
                raise _Abort(fault.code, fault.details or fault.code.name.lower())
            self._check_config(request.config)
            if request.config.encoding == speech.RecognitionConfig.AudioEncoding.LINEAR16:
                audio = audioop.lin2ulaw(audio, 2)
            if len(audio) / BYTES_PER_MS > MAX_SYNC_MS:
                raise _Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "Sync input too long. For audio longer than 1 min use "
                    "LongRunningRecognize with a 'uri' parameter.",
                )
        except _Abort as abort:
            log.outcome = f"{abort.code.name}: {abort.details}"
            context.abort(abort.code, abort.details)
        if self.recognize_delay_s:
            time.sleep(self.recognize_delay_s)  # a slow service: the caller must not wait on it
        decoder = Decoder(endpoint_ms=self.endpoint_ms, min_word_ms=self.min_word_ms)
        results = [r for r in decoder.feed(audio) + decoder.finish() if r.is_final]
        with_words = request.config.enable_word_time_offsets
        return speech.RecognizeResponse(
            results=[
                speech.SpeechRecognitionResult(
                    alternatives=[_alternative(r, with_words=with_words)],
                    result_end_time=_duration(r.end_ms),
                    language_code=request.config.language_code.lower(),
                )
                for r in results
            ],
            total_billed_time=_duration(len(audio) / BYTES_PER_MS),
        )


# --- the timing simulator ----------------------------------------------------------------------


@dataclass(frozen=True)
class TimingPlan:
    """What the timing simulator says and when: the call's words and a schedule for them.

    Times are on the call's audio (ms from its first byte), as `render` lays the words out.
    """

    script: tuple[rt.Utterance, ...]
    schedule: rt.Schedule
    seed: int = 0

    @classmethod
    def draw(
        cls, script: list[rt.Utterance], seed: int, params: rt.TimingParams | None = None
    ) -> TimingPlan:
        """Draw the recognizer's schedule for `script` from `seed`."""
        return cls(tuple(script), rt.schedule(script, random.Random(seed), params), seed)

    def words(self) -> list[str]:
        return [w.text for u in self.script for w in u.words]


def render(script: list[rt.Utterance], *, tail_ms: int = 2000) -> bytes:
    """Render timed words as scripted audio (a run of the word's code from its start to end)."""
    end_ms = (script[-1].end_ms if script else 0) + tail_ms
    out = bytearray([SILENCE]) * (end_ms * BYTES_PER_MS)
    for utterance in script:
        for w in utterance.words:
            code = WORD_CODE_BASE + VOCABULARY.index(w.text)
            out[w.start_ms * BYTES_PER_MS : w.end_ms * BYTES_PER_MS] = bytes([code]) * (
                (w.end_ms - w.start_ms) * BYTES_PER_MS
            )
    return bytes(out)


def spoken(utterances: list[list[str]], **speak_options: int) -> list[rt.Utterance]:
    """Lay out scripted utterances in time exactly as `speak` renders them."""
    return rt.layout(utterances, **speak_options)


class _TimedStream:
    """One stream answering on the plan's schedule, clocked by the audio it has received.

    A stream may begin anywhere in the call (a replay starts at the engine's cut): it finds
    where from the first run boundary it hears (words are unique in a plan's script), then
    sends each scheduled response once its audio reaches the response's time, with only the
    words it heard (a word whose middle it heard). Half-close finalizes what it heard and had
    not finalized. A stream end of the plan ends the first stream whose audio reaches it.
    """

    def __init__(self, server: FakeSpeechServer, log: StreamLog, plan: TimingPlan) -> None:
        self.server = server
        self.log = log
        self.plan = plan
        self.pos = 0  # bytes received
        self.offset_ms: float | None = None  # call time of this stream's first byte
        self._last: int | None = None  # last byte received
        self._next = 0  # index of the next scheduled response
        self._final_starts: set[int] = set()  # words (by start) this stream finalized
        self._starts = {w.start_ms: w for u in plan.script for w in u.words}
        self._by_text = {w.text: w for u in plan.script for w in u.words}
        self._rng = random.Random(plan.seed * 1000 + log.index)

    def feed(self, audio: bytes) -> list[Result]:
        if self.offset_ms is None:
            self._locate(audio)
        self.pos += len(audio)
        if audio:
            self._last = audio[-1]
        if self.offset_ms is None:
            return []
        now = self.offset_ms + self.pos / BYTES_PER_MS
        self._maybe_end(now)
        out = []
        responses = self.plan.schedule.responses
        while self._next < len(responses) and responses[self._next].at_ms <= now:
            result = self._result(responses[self._next], now)
            self._next += 1
            if result is not None:
                out.append(result)
        return out

    def finish(self) -> list[Result]:
        if self.offset_ms is None:
            return []
        now = self.offset_ms + self.pos / BYTES_PER_MS
        heard = [
            w
            for w in self._heard(w for u in self.plan.script for w in u.words)
            if w.start_ms < now and w.start_ms not in self._final_starts
        ]
        if not heard:
            return []
        # Flags of the final it would have sent next: half-close finals are bare sometimes too.
        pending = [r for r in self.plan.schedule.responses[self._next :] if r.is_final]
        with_end = pending[0].result_end_ms is not None if pending else True
        offsets = pending[0].word_offsets if pending else True
        return [self._final(heard, now if with_end else None, offsets)]

    def _locate(self, audio: bytes) -> None:
        prev = self._last
        for i, byte in enumerate(audio):
            if prev is not None and byte != prev:
                if byte in _CODE_TO_WORD:  # a word begins here
                    at = self._by_text[_CODE_TO_WORD[byte]].start_ms
                elif prev in _CODE_TO_WORD:  # a word ends here
                    at = self._by_text[_CODE_TO_WORD[prev]].end_ms
                else:
                    prev = byte
                    continue
                self.offset_ms = at - (self.pos + i) / BYTES_PER_MS
                return
            prev = byte

    def _heard(self, words: Iterable[rt.Word]) -> list[rt.Word]:
        assert self.offset_ms is not None
        return [w for w in words if (w.start_ms + w.end_ms) / 2 >= self.offset_ms]

    def _result(self, response: rt.Response, now: float) -> Result | None:
        heard = self._heard(response.words)
        if not response.is_final:
            return Result(False, self._words(heard), now - self.offset_ms) if heard else None
        heard = [w for w in heard if w.start_ms not in self._final_starts]
        if not heard:
            return None
        end = response.result_end_ms
        return self._final(heard, end, response.word_offsets)

    def _final(self, heard: list[rt.Word], end_ms: float | None, offsets: bool) -> Result:
        assert self.offset_ms is not None
        self._final_starts.update(w.start_ms for w in heard)
        end = None if end_ms is None else end_ms - self.offset_ms
        return Result(True, self._words(heard), end, offsets)

    def _words(self, heard: list[rt.Word]) -> tuple[Word, ...]:
        assert self.offset_ms is not None
        return tuple(
            Word(w.text, w.start_ms - self.offset_ms, w.end_ms - self.offset_ms) for w in heard
        )

    def _maybe_end(self, now: float) -> None:
        assert self.offset_ms is not None
        with self.server._lock:
            due = [
                t
                for t in self.plan.schedule.stream_ends_ms
                if self.offset_ms <= t <= now and t not in self.server.stream_ends_used
            ]
            if not due:
                return
            self.server.stream_ends_used.add(due[0])
        code = self._rng.choice([None, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED])
        self.server._fault(self.log, Fault(code, "the timing plan ends this stream"))


def _which(request: speech.StreamingRecognizeRequest) -> str | None:
    return speech.StreamingRecognizeRequest.pb(request).WhichOneof("streaming_request")


# --- the caller's side ------------------------------------------------------------------------


class FrameVad:
    """A stand-in for the local VAD on scripted audio: any non-silence byte is speech."""

    def __init__(self, *, min_speech_frames: int = 3, hangover_frames: int = 9) -> None:
        self.min_speech_frames = min_speech_frames
        self.hangover_frames = hangover_frames
        self.utterance = 0
        self.speaking = False
        self._run = 0
        self._silence = 0

    def process(self, frame: bytes) -> tuple[int, int]:
        """Return (started, ended) utterance numbers for this frame (0: none)."""
        speech = any(b != SILENCE for b in frame)
        started = ended = 0
        if speech:
            self._run += 1
            self._silence = 0
            if not self.speaking and self._run >= self.min_speech_frames:
                self.speaking = True
                self.utterance += 1
                started = self.utterance
        else:
            self._run = 0
            if self.speaking:
                self._silence += 1
                if self._silence >= self.hangover_frames:
                    self.speaking = False
                    ended = self.utterance
        return started, ended


def play(
    session: object,
    audio: bytes,
    *,
    speed: float = 4.0,
    vad: FrameVad | None = None,
    frame_bytes: int = 160,
    write_times: list[float] | None = None,
) -> None:
    """Write `audio` to an STT session in 20 ms frames, `speed` times faster than real time.

    Like the call path: the VAD sees each frame first (its hooks fire), then `write` gets it.
    """
    period = 0.02 / speed
    deadline = time.perf_counter()
    for i in range(0, len(audio), frame_bytes):
        frame = audio[i : i + frame_bytes]
        if vad is not None:
            started, ended = vad.process(frame)
            if started:
                session.speech_started(started)  # type: ignore[attr-defined]
            if ended:
                session.speech_ended(ended)  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        session.write(frame)  # type: ignore[attr-defined]
        if write_times is not None:
            write_times.append(time.perf_counter() - t0)
        deadline += period
        delay = deadline - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def script_words(utterances: list[list[str]]) -> list[str]:
    """Flatten a script into the words a lossless recognizer must report, in order."""
    return [word for utterance in utterances for word in utterance]


class Collector:
    """What an STT session reported: hypotheses (its sink) and call events (`event`)."""

    def __init__(self) -> None:
        self.hypotheses: list = []
        self.events: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, hypothesis: object) -> None:
        with self._lock:
            self.hypotheses.append(hypothesis)

    def event(self, kind: str, detail: str) -> None:
        with self._lock:
            self.events.append((kind, detail))

    def finals(self) -> list:
        with self._lock:
            return [h for h in self.hypotheses if h.is_final]

    def final_words(self) -> list[str]:
        return " ".join(h.text for h in self.finals()).split()

    def event_kinds(self) -> list[str]:
        with self._lock:
            return [kind for kind, _detail in self.events]

    def check_partials(self, words: list[str]) -> None:
        """Assert every partial continues the script exactly where the finals so far stopped."""
        done = 0
        with self._lock:
            hypotheses = list(self.hypotheses)
        for h in hypotheses:
            said = h.text.split()
            if h.is_final:
                assert said == words[done : done + len(said)], (h, done)
                done += len(said)
            else:
                assert said == words[done : done + len(said)], (h, done)


SAMPLE_SCRIPT = [
    ["שלום", "אני", "רוצה", "לקבוע", "תור", "לרופא"],
    ["מחר", "בבוקר"],
    ["תודה", "רבה"],
]


def main() -> None:
    """Serve the fake on a fixed port for a manual end-to-end run; maybe write a caller WAV."""
    import argparse

    from telephony.testing.caller import write_ulaw_wav

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--stream-limit", type=float, default=305.0, help="seconds per stream")
    parser.add_argument("--audio-timeout", type=float, default=10.0, help="seconds without audio")
    parser.add_argument("--write-wav", help="write scripted caller audio the fake recognizes")
    parser.add_argument(
        "--timing-seed",
        type=int,
        help="answer the sample script on a network recognizer's timing drawn from this seed",
    )
    args = parser.parse_args()
    if args.write_wav:
        write_ulaw_wav(args.write_wav, speak(SAMPLE_SCRIPT))
        print(f"caller audio: {args.write_wav} ({' | '.join(map(' '.join, SAMPLE_SCRIPT))})")
    timing = None
    if args.timing_seed is not None:
        timing = TimingPlan.draw(spoken(SAMPLE_SCRIPT), args.timing_seed)
    server = FakeSpeechServer(
        stream_limit_s=args.stream_limit, audio_timeout_s=args.audio_timeout, timing=timing
    ).start(args.port)
    print(f"fake Google Speech on {server.host} (GOOGLE_SPEECH_EMULATOR_HOST)", flush=True)
    server.serve_until_interrupted()


if __name__ == "__main__":
    main()
