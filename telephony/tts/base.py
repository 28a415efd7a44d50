"""The text-to-speech interface: text in, 8 kHz mu-law out."""

from abc import ABC, abstractmethod


class TtsEngine(ABC):
    name: str = "?"
    voice: str = ""

    def warm_up(self) -> None:  # noqa: B027 - optional hook, no-op default
        """Load libraries at process start, so the first call does not wait."""

    @abstractmethod
    def synthesize(self, text: str) -> bytes:
        """Render `text` to headerless 8 kHz mono mu-law bytes."""
