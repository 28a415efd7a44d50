"""espeak-ng through ctypes (the library and its data ship in the `espeakng-loader` wheel)."""

from __future__ import annotations

import ctypes
import logging
import threading
import time

import espeakng_loader

from telephony.media.audio import SAMPLE_RATE, pcm16_to_ulaw, resample_pcm16
from telephony.tts.base import TtsEngine

log = logging.getLogger(__name__)

# speak_lib.h constants.
AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_Synth blocks and hands audio to our callback
# Without this flag espeak-ng calls exit() when its data is missing: it would kill the server.
ESPEAK_INITIALIZE_DONT_EXIT = 0x8000
ESPEAK_CHARS_UTF8 = 1
POS_CHARACTER = 1
EE_OK = 0

# int callback(short *wav, int numsamples, espeak_EVENT *events); non-zero aborts synthesis.
_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class EspeakError(RuntimeError):
    """espeak-ng refused a call."""


class _Library:
    """The process-wide libespeak-ng: global state, not thread-safe, so one lock guards it all."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._lib: ctypes.CDLL | None = None
        self._callback: ctypes._CFuncPtr | None = None  # kept referenced: C holds the pointer
        self._chunks: list[bytes] = []
        self._voice: str | None = None
        self.sample_rate = 0

    def _load(self) -> ctypes.CDLL:
        """Load and initialize the library once (call with the lock held)."""
        if self._lib is not None:
            return self._lib
        started = time.perf_counter()
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,  # text
            ctypes.c_size_t,  # size in bytes, terminator included
            ctypes.c_uint,  # position
            ctypes.c_int,  # position type
            ctypes.c_uint,  # end position (0: none)
            ctypes.c_uint,  # flags
            ctypes.POINTER(ctypes.c_uint),  # unique identifier (unused)
            ctypes.c_void_p,  # user data (unused)
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.argtypes = []
        lib.espeak_Synchronize.restype = ctypes.c_int

        data_path = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, ESPEAK_INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed ({rate}) with data at {data_path!r}")
        self._callback = _SynthCallback(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)
        self.sample_rate = rate
        self._lib = lib
        log.info("espeak-ng loaded: %d Hz in %.1f ms", rate, (time.perf_counter() - started) * 1000)
        return lib

    def _on_audio(self, wav: ctypes._Pointer, numsamples: int, _events: int | None) -> int:
        """Collect a chunk of PCM16 (espeak ends each sentence with an empty call)."""
        if wav and numsamples > 0:
            self._chunks.append(ctypes.string_at(wav, numsamples * 2))
        return 0

    def ensure_loaded(self) -> int:
        """Load the library if needed and return its sample rate."""
        with self.lock:
            self._load()
            return self.sample_rate

    def synthesize(self, text: str, voice: str) -> tuple[bytes, int]:
        """Render `text` with `voice` to PCM16 at the library's rate."""
        with self.lock:
            lib = self._load()
            if voice != self._voice:
                err = lib.espeak_SetVoiceByName(voice.encode())
                if err != EE_OK:
                    raise EspeakError(f"espeak-ng has no voice {voice!r} (error {err})")
                self._voice = voice
            encoded = text.encode() + b"\0"
            self._chunks = []
            try:
                err = lib.espeak_Synth(
                    encoded, len(encoded), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None
                )
                if err != EE_OK:
                    raise EspeakError(f"espeak_Synth failed (error {err})")
                lib.espeak_Synchronize()
                return b"".join(self._chunks), self.sample_rate
            finally:
                self._chunks = []


_library = _Library()


class EspeakTts(TtsEngine):
    """Local text-to-speech with espeak-ng, rendered to 8 kHz mu-law for the phone line."""

    name = "espeak"

    def __init__(self, voice: str = "en-us") -> None:
        self.voice = voice

    @classmethod
    def from_settings(cls) -> EspeakTts:
        """Build the engine from Django settings (ESPEAK_VOICE)."""
        from django.conf import settings

        return cls(voice=settings.ESPEAK_VOICE)

    def warm_up(self) -> None:
        """Load the library and select the voice, so the first prompt renders at full speed."""
        _library.synthesize("", self.voice)

    def synthesize_pcm16(self, text: str) -> tuple[bytes, int]:
        """Render `text` to mono PCM16; return the audio and its sample rate (22050)."""
        if not text.strip():
            # espeak renders a pause for empty input: no words, no audio.
            return b"", _library.ensure_loaded()
        return _library.synthesize(text, self.voice)

    def synthesize(self, text: str) -> bytes:
        """Render `text` to headerless 8 kHz mono mu-law bytes."""
        pcm, rate = self.synthesize_pcm16(text)
        if not pcm:
            return b""
        return pcm16_to_ulaw(resample_pcm16(pcm, rate, SAMPLE_RATE))
