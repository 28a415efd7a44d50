"""Speech-to-text engines, one process-wide instance per name (STT_ENGINE picks the default)."""

from __future__ import annotations

from telephony.registry import EngineRegistry
from telephony.stt.base import SttEngine

# Imported on first use: the whisper model and the Google client are heavy and optional.
ENGINES = {
    "whisper": "telephony.stt.whisper:WhisperSttEngine",
    "none": "telephony.stt.none:NullSttEngine",
    "google": "telephony.stt.google.engine:GoogleSttEngine",
    "slow": "telephony.testing.slow_stt:SlowSttEngine",  # tests and drills only: a blocking write
}

_registry = EngineRegistry(kind="STT", setting="STT_ENGINE", targets=ENGINES)


def get_stt_engine(name: str | None = None) -> SttEngine:
    """Return the process's engine called `name` (default: settings.STT_ENGINE)."""
    return _registry.get(name)
