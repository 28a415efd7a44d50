"""Rendered prompts, kept in memory and on disk, so a greeting is synthesized once."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from pathlib import Path

from telephony.tts.base import TtsEngine

log = logging.getLogger(__name__)


def prompt_key(engine: TtsEngine, text: str) -> str:
    """Name a rendering: sha256 of engine name, voice and text."""
    # NUL separators: no choice of voice or text can make two different triples collide.
    material = "\0".join((engine.name, engine.voice, text)).encode()
    return hashlib.sha256(material).hexdigest()


class PromptCache:
    """Render text through `engine` once; later renders come from memory or `directory`."""

    def __init__(
        self, engine: TtsEngine, directory: Path | None, *, memory_items: int = 256
    ) -> None:
        self.engine = engine
        self.memory_items = memory_items
        self.directory = Path(directory) if directory is not None else None
        self._memory: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self.syntheses = 0  # renders that reached the engine

    def path_for(self, text: str) -> Path | None:
        """Where the rendering of `text` lives on disk (None: memory only)."""
        if self.directory is None:
            return None
        return self.directory / f"{prompt_key(self.engine, text)}.ulaw"

    def render(self, text: str) -> bytes:
        """Return `text` as 8 kHz mu-law, synthesizing only if no copy exists."""
        key = prompt_key(self.engine, text)
        with self._lock:
            audio = self._memory.pop(key, None)
            if audio is not None:
                self._memory[key] = audio  # most recently used goes last
                return audio
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        # One render per text at a time; other texts are not held up behind a slow engine.
        with key_lock:
            audio = self._memory.get(key)
            if audio is None:
                audio = self._read(key)
                if audio is None:
                    audio = self.engine.synthesize(text)
                    self.syntheses += 1
                    self._write(key, audio)
                self._remember(key, audio)
        with self._lock:
            self._key_locks.pop(key, None)
        return audio

    def _remember(self, key: str, audio: bytes) -> None:
        # Prompts are few, but replies may be generated text: keep memory bounded (least
        # recently used out).
        with self._lock:
            self._memory[key] = audio
            while len(self._memory) > self.memory_items:
                del self._memory[next(iter(self._memory))]

    def _read(self, key: str) -> bytes | None:
        if self.directory is None:
            return None
        try:
            audio = (self.directory / f"{key}.ulaw").read_bytes()
        except FileNotFoundError:
            return None
        except OSError:
            log.warning("prompt cache: cannot read %s", key, exc_info=True)
            return None
        return audio or None  # an empty file is no rendering: render again

    def _write(self, key: str, audio: bytes) -> None:
        if self.directory is None or not audio:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Write beside the target and rename: a reader never sees half a file.
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{key}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(audio)
                os.replace(tmp, self.directory / f"{key}.ulaw")
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            # The disk copy only saves work next time: the call goes on with the memory copy.
            log.warning("prompt cache: cannot write %s", key, exc_info=True)
