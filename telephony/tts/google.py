"""Google Cloud Text-to-Speech: he-IL voice, 8 kHz mu-law, WAV header removed by parsing RIFF."""

from __future__ import annotations

import audioop  # the standard library up to 3.12; from 3.13 the audioop-lts backport
import logging
import threading
import time

import grpc
from google.api_core import exceptions as core_exceptions
from google.api_core import retry as retries
from google.auth.credentials import AnonymousCredentials
from google.cloud import texttospeech_v1 as tts
from google.cloud.texttospeech_v1.services.text_to_speech.transports.grpc import (
    TextToSpeechGrpcTransport,
)

from telephony.media.audio import SAMPLE_RATE, pcm16_to_ulaw, resample_pcm16
from telephony.tts.base import TtsEngine
from telephony.tts.wav import (
    WAVE_FORMAT_MULAW,
    WAVE_FORMAT_PCM,
    WavAudio,
    WavError,
    is_riff_wave,
    parse_wav,
)

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "texttospeech.googleapis.com"
# Google refuses more than 5000 bytes of input text per request.
MAX_INPUT_BYTES = 5000


def language_of(voice: str) -> str:
    """Return the language code a Google voice name starts with ("he-IL-Wavenet-A" -> "he-IL")."""
    parts = voice.split("-")
    if len(parts) < 2:
        raise ValueError(f"not a Google voice name: {voice!r}")
    return f"{parts[0]}-{parts[1]}"


def to_ulaw_8k(wav: WavAudio) -> bytes:
    """Return the samples of `wav` as 8 kHz mono mu-law, converting only when they are not."""
    if wav.format_tag == WAVE_FORMAT_MULAW and wav.bits_per_sample == 8:
        if wav.channels == 1 and wav.sample_rate == SAMPLE_RATE:
            return wav.data
        pcm = audioop.ulaw2lin(wav.data, 2)
    elif wav.format_tag == WAVE_FORMAT_PCM and wav.bits_per_sample == 16:
        pcm = wav.data[: len(wav.data) - len(wav.data) % (2 * wav.channels)]
    else:
        raise WavError(
            f"unsupported WAV audio: format {wav.format_tag:#x}, {wav.bits_per_sample} bits"
        )
    if wav.channels == 2:
        pcm = audioop.tomono(pcm, 2, 0.5, 0.5)
    elif wav.channels != 1:
        raise WavError(f"unsupported channel count {wav.channels}")
    return pcm16_to_ulaw(resample_pcm16(pcm, wav.sample_rate, SAMPLE_RATE))


class GoogleTtsEngine(TtsEngine):
    """TTS_ENGINE=google: one process-wide client; `synthesize` may be called from any thread."""

    name = "google"

    def __init__(
        self,
        *,
        voice: str = "he-IL-Wavenet-A",
        endpoint: str = DEFAULT_ENDPOINT,
        emulator_host: str = "",
        timeout_s: float = 10.0,
    ) -> None:
        self.voice = voice
        self.language = language_of(voice)
        self.endpoint = endpoint
        self.emulator_host = emulator_host
        self.timeout_s = timeout_s
        self.syntheses = 0
        self._client: tts.TextToSpeechClient | None = None
        self._lock = threading.Lock()
        # The library's default retry keeps going for minutes; a prompt is useless by then.
        self._retry = retries.Retry(
            initial=0.2,
            maximum=1.0,
            multiplier=2.0,
            predicate=retries.if_exception_type(
                core_exceptions.ServiceUnavailable, core_exceptions.DeadlineExceeded
            ),
            timeout=timeout_s,
        )

    @classmethod
    def from_settings(cls) -> GoogleTtsEngine:
        """Build the engine from Django settings."""
        from django.conf import settings

        return cls(
            voice=settings.GOOGLE_TTS_VOICE,
            endpoint=settings.GOOGLE_TTS_ENDPOINT,
            emulator_host=settings.GOOGLE_TTS_EMULATOR_HOST,
            timeout_s=settings.GOOGLE_TTS_TIMEOUT_S,
        )

    def warm_up(self) -> None:
        """Create the client (credentials, channel) before the first call needs it."""
        self.client()

    def client(self) -> tts.TextToSpeechClient:
        """Return the process-wide client, creating it on first use."""
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> tts.TextToSpeechClient:
        if self.emulator_host:
            # As Google's other emulators: plaintext gRPC, no credentials.
            channel = grpc.insecure_channel(self.emulator_host)
            transport = TextToSpeechGrpcTransport(
                channel=channel, credentials=AnonymousCredentials()
            )
            return tts.TextToSpeechClient(transport=transport)
        return tts.TextToSpeechClient(client_options={"api_endpoint": self.endpoint})

    def synthesize(self, text: str) -> bytes:
        """Render `text` to headerless 8 kHz mono mu-law bytes."""
        if len(text.encode()) > MAX_INPUT_BYTES:
            raise ValueError(f"text is over Google's {MAX_INPUT_BYTES}-byte limit")
        started = time.perf_counter()
        response = self.client().synthesize_speech(
            input=tts.SynthesisInput(text=text),
            voice=tts.VoiceSelectionParams(language_code=self.language, name=self.voice),
            audio_config=tts.AudioConfig(
                audio_encoding=tts.AudioEncoding.MULAW, sample_rate_hertz=SAMPLE_RATE
            ),
            retry=self._retry,
            timeout=self.timeout_s,
        )
        self.syntheses += 1
        blob = response.audio_content
        # Google puts a WAV header before MULAW audio; take the samples from the data chunk.
        audio = to_ulaw_8k(parse_wav(blob)) if is_riff_wave(blob) else blob
        log.info(
            "google tts voice=%s chars=%d bytes=%d in %.0f ms",
            self.voice,
            len(text),
            len(audio),
            (time.perf_counter() - started) * 1000,
        )
        return audio
