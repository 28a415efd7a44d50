"""Named engines, imported on first use and built once per process from settings."""

from __future__ import annotations

import importlib
import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured


class EngineRegistry:
    """Map names ("whisper", "google", ...) to "module:Class" and keep one instance of each."""

    def __init__(self, *, kind: str, setting: str, targets: dict[str, str]) -> None:
        self.kind = kind
        self.setting = setting
        self.targets = targets  # mutable: a module may register an engine of its own
        self._engines: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, name: str | None = None) -> Any:
        """Return the process's engine called `name` (default: the setting's value)."""
        if name is None:
            from django.conf import settings

            name = getattr(settings, self.setting)
        name = name.strip().lower()
        engine = self._engines.get(name)
        if engine is not None:
            return engine
        target = self.targets.get(name)
        if target is None:
            valid = ", ".join(sorted(self.targets))
            raise ImproperlyConfigured(f"Unknown {self.kind} engine {name!r}; valid: {valid}")
        with self._lock:
            if name not in self._engines:
                module, cls = target.split(":")
                self._engines[name] = getattr(importlib.import_module(module), cls).from_settings()
            return self._engines[name]
