"""Text-to-speech engines, one process-wide instance per name (TTS_ENGINE picks the default)."""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured

from telephony.tts.base import TtsEngine

if TYPE_CHECKING:
    from telephony.tts.cache import PromptCache

# Imported on first use: the Google client is heavy and only production needs it.
ENGINES = {
    "espeak": "telephony.tts.espeak:EspeakTts",
    "google": "telephony.tts.google:GoogleTtsEngine",
}

_engines: dict[str, TtsEngine] = {}
_caches: dict[str, PromptCache] = {}
_lock = threading.Lock()


def get_tts_engine(name: str | None = None) -> TtsEngine:
    """Return the process's engine called `name` (default: settings.TTS_ENGINE)."""
    if name is None:
        from django.conf import settings

        name = settings.TTS_ENGINE
    name = name.strip().lower()
    engine = _engines.get(name)
    if engine is not None:
        return engine
    target = ENGINES.get(name)
    if target is None:
        raise ImproperlyConfigured(
            f"Unknown TTS engine {name!r}; valid names: {', '.join(sorted(ENGINES))}"
        )
    with _lock:
        if name not in _engines:
            module, cls = target.split(":")
            _engines[name] = getattr(importlib.import_module(module), cls).from_settings()
        return _engines[name]


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
