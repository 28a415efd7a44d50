"""STT_ENGINE=google: credentials, clients and endpoint health shared by all calls of a process."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

import grpc
from google.auth.credentials import AnonymousCredentials
from google.cloud import speech_v1 as speech
from google.cloud.speech_v1.services.speech.transports.grpc import SpeechGrpcTransport

from telephony.stt.base import EventSink, HypothesisSink, SttEngine
from telephony.stt.google.config import GoogleSttConfig
from telephony.stt.google.streaming import GoogleSttSession

log = logging.getLogger(__name__)

REFUSAL_TTL_S = 600.0  # a refused endpoint is skipped by new sessions this long


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
        self.sessions_opened = 0

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
        log.warning("google speech endpoint %s refused: %s", endpoint, reason)

    def open(
        self, call_sid: str, on_hypothesis: HypothesisSink, *, on_event: EventSink | None = None
    ) -> GoogleSttSession:
        """Open a session and start its thread; returns at once (the stream opens behind it)."""
        with self._lock:
            self.sessions_opened += 1
        session = GoogleSttSession(self, call_sid, on_hypothesis, on_event=on_event)
        session.start()
        return session
