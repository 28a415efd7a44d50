"""A call's reports, counted for /metrics on their way to its observer (a session by hand)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from telephony.media.audio import SILENCE_FRAME
from telephony.metered import MeteredCall, counters_of, live_counters
from telephony.metrics.scrape import LineMetrics
from telephony.observer import CallObserver
from telephony.turns.transcript import TranscriptEvent
from tests.helpers.clock import FakeClock
from tests.helpers.session import make_session


def scrape(line: LineMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(line)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }


def test_the_live_counters_are_the_totals_the_call_ends_with() -> None:
    clock = FakeClock(50.0)
    session, _, _ = make_session(clock)
    for _ in range(30):
        session.rx_enqueue(SILENCE_FRAME)
    for _ in range(25):
        session.rx._write_one(session.rx_q.get_nowait())
    for _ in range(10):
        session.tx.tick()
    assert live_counters(session) == counters_of(session.totals())
    assert live_counters(session).frames_in == 30


def test_every_report_reaches_the_observer_and_the_line_counts_the_call() -> None:
    clock = FakeClock(50.0)
    session, _, recorded = make_session(clock)
    line = LineMetrics()
    metered = MeteredCall(recorded, line)
    session.observer = metered
    metered.started(session)
    for _ in range(50):
        session.rx_enqueue(SILENCE_FRAME)
        session.rx._write_one(session.rx_q.get_nowait())
    clock.now += 1.0
    session._rx_tick()  # one second reported: the queue depths counted, the sample passed on
    assert len(recorded.samples) == 1
    session._on_stt_event("stt_reconnect", "UNAVAILABLE")
    assert ("stt_reconnect", "UNAVAILABLE", None) in recorded.events
    final = TranscriptEvent(
        call_sid="CA1", kind="final", text="hi", utterance=1, offset_ms=0, at=clock.now,
        latency_ms=250.0,
    )  # fmt: skip
    session._on_transcript(final)
    live = scrape(line)
    assert live[("telephony_calls_active", ())] == 1
    assert live[("telephony_frames_total", (("direction", "in"),))] == 50
    assert live[("telephony_stt_write_seconds_count", ())] == 50
    assert live[("telephony_queue_depth_frames_count", (("queue", "tx"),))] == 1
    assert live[("telephony_stt_stream_events_total", (("kind", "reconnect"),))] == 1
    assert live[("telephony_final_latency_seconds_count", (("source", "engine"),))] == 1
    assert live[("telephony_final_latency_seconds_sum", (("source", "engine"),))] == 0.25

    totals = {**session.totals(), "rx_drops": 2}  # two frames left unwritten at the stop
    metered.ended(session, "stop", totals)
    ended = scrape(line)
    assert ended[("telephony_calls_active", ())] == 0
    assert ended[("telephony_calls_total", (("outcome", "completed"),))] == 1
    assert ended[("telephony_drops_total", (("side", "rx"),))] == 2
    assert ended[("telephony_frames_total", (("direction", "in"),))] == 50


def test_every_report_of_the_observer_interface_is_passed_on() -> None:
    """A report MeteredCall does not override would stop at the interface's do-nothing default."""
    reports = [
        name
        for name, member in vars(CallObserver).items()
        if callable(member) and not name.startswith("_")
    ]
    assert reports, "the interface has reports"
    assert [name for name in reports if name not in vars(MeteredCall)] == []
