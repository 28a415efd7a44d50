"""What a Google STT engine is configured with, and the recognition configs built from it."""

from __future__ import annotations

from dataclasses import dataclass

from google.cloud import speech_v1 as speech

from telephony.media.audio import FRAME_MS, SAMPLE_RATE

MAX_REQUEST_BYTES = 25_000  # Google takes at most 25 KB of audio per streaming request
MAX_SEGMENT_MS = 55_000  # `recognize` takes at most one minute of audio
CATCH_UP_REQUEST_MS = 1000  # replays and backlogs go in 1 s requests rather than 40 ms ones


@dataclass(frozen=True, slots=True)
class GoogleSttConfig:
    """Everything a Google STT engine needs; `from_settings` reads it from Django settings."""

    endpoints: tuple[str, ...] = ("speech.googleapis.com",)
    insecure: bool = False  # plaintext gRPC and no credentials: a local emulator
    language: str = "he-IL"
    model: str = ""  # empty: Google picks
    encoding: str = "MULAW"  # MULAW sends Twilio's bytes as is; LINEAR16 decodes them first
    batch_ms: int = 40
    quiet_batch_ms: int = 0  # while the caller is quiet, longer requests (0: batch_ms always)
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
        quiet_bytes = self.quiet_batch_ms * self.bytes_per_ms
        if (
            self.batch_ms < FRAME_MS
            or self.catch_up_bytes > MAX_REQUEST_BYTES
            or quiet_bytes > self.catch_up_bytes
        ):
            raise ValueError(
                "batch and catch-up requests must hold 20 ms to 25 KB of audio, "
                "a quiet batch no more than a catch-up request"
            )
        # Zero would let the driver open streams without ever waiting: a hot loop.
        if self.rotate_s <= 0 or self.backoff_s <= 0 or self.backoff_max_s < self.backoff_s:
            raise ValueError("rotate_s and backoff_s must be positive, backoff_max_s >= backoff_s")

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
            quiet_batch_ms=settings.GOOGLE_STT_QUIET_BATCH_MS,
            queue_frames=settings.GOOGLE_STT_QUEUE_FRAMES,
            rotate_s=settings.GOOGLE_STREAM_ROTATE_S,
            replay_max_ms=settings.GOOGLE_STT_REPLAY_MAX_MS,
            backoff_s=settings.GOOGLE_STREAM_BACKOFF_S,
            backoff_max_s=settings.GOOGLE_STREAM_BACKOFF_MAX_S,
            max_failures=settings.GOOGLE_STREAM_MAX_FAILURES,
            recognize_timeout_s=settings.GOOGLE_RECOGNIZE_TIMEOUT_S,
        )

    @property
    def sample_bytes(self) -> int:
        """Bytes per sample as sent to Google: mu-law 1, LINEAR16 2."""
        return 2 if self.encoding == "LINEAR16" else 1

    @property
    def bytes_per_ms(self) -> int:
        return self.sample_bytes * SAMPLE_RATE // 1000

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
