"""Text-to-speech engines, one process-wide instance per name (TTS_ENGINE picks the default)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from telephony.registry import EngineRegistry
from telephony.tts.base import TtsEngine

if TYPE_CHECKING:
    from telephony.tts.cache import PromptCache

# Imported on first use: the Google client is heavy and only production needs it.
ENGINES = {
    "espeak": "telephony.tts.espeak:EspeakTts",
    "google": "telephony.tts.google:GoogleTtsEngine",
}

_registry = EngineRegistry(kind="TTS", setting="TTS_ENGINE", targets=ENGINES)
_caches: dict[str, PromptCache] = {}
_lock = threading.Lock()


def get_tts_engine(name: str | None = None) -> TtsEngine:
    """Return the process's engine called `name` (default: settings.TTS_ENGINE)."""
    return _registry.get(name)


def get_prompt_cache() -> PromptCache:
    """Return the process's prompt cache for the configured engine (on disk in TTS_CACHE_DIR)."""
    from django.conf import settings

    from telephony.tts.cache import PromptCache

    engine = get_tts_engine()
    with _lock:
        cache = _caches.get(engine.name)
        if cache is None:
            cache = _caches[engine.name] = PromptCache(engine, settings.TTS_CACHE_DIR)
        return cache
