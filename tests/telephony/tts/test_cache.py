"""PromptCache: memory and disk copies of real espeak renders."""

from __future__ import annotations

import threading
from pathlib import Path

from telephony.tts import get_prompt_cache, get_tts_engine
from telephony.tts.cache import PromptCache, prompt_key
from telephony.tts.espeak import EspeakTts

GREETING = "Hello, thank you for calling."


class CountingTts(EspeakTts):
    """The real engine, counting how often it is asked to synthesize."""

    def __init__(self, voice: str = "en-us") -> None:
        super().__init__(voice)
        self.calls = 0
        self._lock = threading.Lock()

    def synthesize(self, text: str) -> bytes:
        with self._lock:
            self.calls += 1
        return super().synthesize(text)


def test_a_repeat_render_does_no_synthesis(tmp_path: Path) -> None:
    tts = CountingTts()
    cache = PromptCache(tts, tmp_path)
    first = cache.render(GREETING)
    assert len(first) > 8000
    assert cache.render(GREETING) is first
    assert tts.calls == 1
    assert cache.syntheses == 1


def test_the_disk_copy_serves_a_new_process(tmp_path: Path) -> None:
    audio = PromptCache(CountingTts(), tmp_path).render(GREETING)
    tts = CountingTts()
    again = PromptCache(tts, tmp_path).render(GREETING)
    assert again == audio
    assert tts.calls == 0
    path = PromptCache(tts, tmp_path).path_for(GREETING)
    assert path is not None
    assert path.read_bytes() == audio
    # Written through a temporary file and a rename: nothing else is left in the directory.
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_the_key_covers_engine_voice_and_text(tmp_path: Path) -> None:
    us, gb = CountingTts("en-us"), CountingTts("en")
    assert prompt_key(us, GREETING) != prompt_key(gb, GREETING)
    assert prompt_key(us, GREETING) != prompt_key(us, GREETING + " ")
    assert len(prompt_key(us, GREETING)) == 64
    PromptCache(us, tmp_path).render(GREETING)
    PromptCache(gb, tmp_path).render(GREETING)
    assert (us.calls, gb.calls) == (1, 1)
    assert len(list(tmp_path.iterdir())) == 2


def test_an_empty_disk_file_is_rendered_again(tmp_path: Path) -> None:
    tts = CountingTts()
    path = PromptCache(tts, tmp_path).path_for(GREETING)
    assert path is not None
    path.write_bytes(b"")
    audio = PromptCache(tts, tmp_path).render(GREETING)
    assert audio
    assert tts.calls == 1
    assert path.read_bytes() == audio


def test_an_unwritable_directory_still_renders(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    tts = CountingTts()
    cache = PromptCache(tts, blocker / "cache")
    assert cache.render(GREETING)
    assert cache.render(GREETING)
    assert tts.calls == 1  # the memory copy still holds


def test_memory_only_cache_and_its_bound() -> None:
    tts = CountingTts()
    cache = PromptCache(tts, None, memory_items=2)
    assert cache.path_for(GREETING) is None
    for text in ("one", "two", "one", "three", "one"):
        cache.render(text)
    # "one" stays warm while "two" is pushed out by "three"; the memory never holds more than 2.
    assert tts.calls == 3
    cache.render("two")
    assert tts.calls == 4


def test_simultaneous_renders_of_one_text_synthesize_once(tmp_path: Path) -> None:
    tts = CountingTts()
    cache = PromptCache(tts, tmp_path)
    barrier = threading.Barrier(6)
    results: list[bytes] = []

    def render() -> None:
        barrier.wait()
        results.append(cache.render(GREETING))

    threads = [threading.Thread(target=render) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 6
    assert len(set(results)) == 1
    assert tts.calls == 1


def test_the_process_cache_uses_the_configured_engine() -> None:
    cache = get_prompt_cache()
    assert cache is get_prompt_cache()
    assert cache.engine is get_tts_engine()
