"""Single `recognize` requests for utterances cut by the local VAD, when streaming cannot be had.

While streaming is refused or down, the session's driver keeps the timeline and hands each
ended VAD utterance's audio here as a `Segment`. One thread per call, `stt-recognize-<sid>`,
sends them one at a time, each with an explicit deadline, and reports the words back.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable

from google.api_core import exceptions as core_exceptions
from google.api_core import retry as retries
from google.cloud import speech_v1 as speech

from telephony.stt.base import EventSink
from telephony.stt.google.config import GoogleSttConfig
from telephony.stt.google.rules import describe
from telephony.stt.google.timeline import Segment, TimedWord, timed_words

log = logging.getLogger(__name__)

RECOGNIZE_QUEUE = 8  # utterances waiting for `recognize`; more means the service is stuck

# (segment, its words on the timeline, its transcripts): what one request heard.
ResultSink = Callable[[Segment, list[TimedWord], list[str]], None]


def recognize_retry(timeout_s: float) -> retries.Retry:
    """Retry an unavailable or slow service for at most `timeout_s`."""
    # The library's default retry runs for up to 5000 s: far too long for a phone call.
    return retries.Retry(
        initial=0.1,
        maximum=1.0,
        multiplier=2.0,
        predicate=retries.if_exception_type(
            core_exceptions.ServiceUnavailable, core_exceptions.DeadlineExceeded
        ),
        timeout=timeout_s,
    )


class SingleRequests:
    """One call's `recognize` requests, made one at a time in a thread of their own."""

    def __init__(
        self,
        call_sid: str,
        config: GoogleSttConfig,
        *,
        client: Callable[[], speech.SpeechClient | None],
        on_result: ResultSink,
        on_event: EventSink,
    ) -> None:
        self.call_sid = call_sid
        self.config = config
        self._client = client  # the session's current client: endpoint fallbacks change it
        self._on_result = on_result
        self._on_event = on_event
        self._recognition_config = config.recognition_config()
        self._retry = recognize_retry(config.recognize_timeout_s)
        self._segments: queue.Queue[Segment | None] = queue.Queue(RECOGNIZE_QUEUE)
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the request thread, once (the driver does this when it first needs it)."""
        if self.thread is None:
            self.thread = threading.Thread(
                target=self._loop, name=f"stt-recognize-{self.call_sid}", daemon=True
            )
            self.thread.start()

    def submit(self, segment: Segment) -> None:
        """Queue one utterance; when the queue is full it is not recognized, and that is logged."""
        try:
            self._segments.put_nowait(segment)
        except queue.Full:
            log.warning(
                "call=%s recognize queue full: utterance %d not recognized",
                self.call_sid,
                segment.utterance,
            )

    def stop(self, until: float) -> None:
        """Let the queued requests finish, then stop the thread; wait until `until` at most."""
        if self.thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._segments.put(None, timeout=max(0.0, until - time.monotonic()))
        self.thread.join(max(0.0, until - time.monotonic()))

    def abandon(self, until: float) -> None:
        """Drop the queued requests and stop the thread; wait until `until` at most."""
        if self.thread is None:
            return
        while True:  # a thread stuck behind a full queue: make room for its stop
            try:
                self._segments.get_nowait()
            except queue.Empty:
                break
        self._segments.put_nowait(None)
        self.thread.join(max(0.0, until - time.monotonic()))

    def _loop(self) -> None:
        while True:
            segment = self._segments.get()
            if segment is None:
                return
            self._recognize(segment)

    def _recognize(self, segment: Segment) -> None:
        client = self._client()
        if client is None:
            return
        try:
            response = client.recognize(
                config=self._recognition_config,
                audio=speech.RecognitionAudio(content=segment.audio),
                retry=self._retry,
                timeout=self.config.recognize_timeout_s,
            )
        except Exception as exc:
            self._on_event(
                "stt_recognize_failed", f"utterance {segment.utterance}: {describe(exc)}"
            )
            return
        start_ms = segment.start / self.config.bytes_per_ms
        words: list[TimedWord] = []
        texts: list[str] = []
        for result in response.results:
            if not result.alternatives:
                continue
            alt = result.alternatives[0]
            texts.append(alt.transcript.strip())
            words.extend(timed_words(alt.words, start_ms))
        self._on_result(segment, words, texts)
