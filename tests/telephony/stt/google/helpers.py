"""Helpers shared by the Google STT tests: an engine and a session on the fake Speech servers."""

from __future__ import annotations

from collections.abc import Callable

from telephony.stt.google.config import GoogleSttConfig
from telephony.stt.google.engine import GoogleSttEngine
from telephony.stt.google.streaming import GoogleSttSession
from tests.fakes.google_speech import Collector


def fake_engine(
    hosts: list[str],
    *,
    rand: Callable[[], float] | None = None,
    clock: Callable[[], float] | None = None,
    **config: object,
) -> GoogleSttEngine:
    """Build an engine on the fake servers at `hosts` (plaintext, anonymous credentials)."""
    options: dict[str, Callable[[], float]] = {}
    if rand is not None:
        options["rand"] = rand
    if clock is not None:
        options["clock"] = clock
    return GoogleSttEngine(
        GoogleSttConfig(endpoints=tuple(hosts), insecure=True, **config), **options
    )


def open_session(
    hosts: list[str],
    sink: Collector,
    call_sid: str = "CAgoogle",
    *,
    rand: Callable[[], float] | None = None,
    clock: Callable[[], float] | None = None,
    **config: object,
) -> GoogleSttSession:
    """Open a session on the fake servers; `sink` collects its hypotheses and events."""
    engine = fake_engine(hosts, rand=rand, clock=clock, **config)
    return engine.open(call_sid, sink, on_event=sink.event)
