"""Speech-to-text engines, one process-wide instance per name (STT_ENGINE picks the default)."""

from __future__ import annotations

import importlib
import threading

from django.core.exceptions import ImproperlyConfigured

from telephony.stt.base import SttEngine

# Imported on first use: the whisper model and the Google client are heavy and optional.
ENGINES = {
    "whisper": "telephony.stt.whisper:WhisperSttEngine",
    "none": "telephony.stt.none:NullSttEngine",
    "google": "telephony.stt.google:GoogleSttEngine",
}

_engines: dict[str, SttEngine] = {}
_lock = threading.Lock()


def get_stt_engine(name: str | None = None) -> SttEngine:
    """Return the process's engine called `name` (default: settings.STT_ENGINE)."""
    if name is None:
        from django.conf import settings

        name = settings.STT_ENGINE
    name = name.strip().lower()
    engine = _engines.get(name)
    if engine is not None:
        return engine
    target = ENGINES.get(name)
    if target is None:
        raise ImproperlyConfigured(
            f"Unknown STT engine {name!r}; valid names: {', '.join(sorted(ENGINES))}"
        )
    with _lock:
        if name not in _engines:
            module, cls = target.split(":")
            _engines[name] = getattr(importlib.import_module(module), cls).from_settings()
        return _engines[name]
