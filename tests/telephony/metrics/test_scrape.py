"""The line's metrics as a scrape reads them: live calls and ended ones, never going back."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from telephony.metrics.histogram import Durations
from telephony.metrics.scrape import CallCounters, CallMetrics, LineMetrics, outcome_of


def scrape(line: LineMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(line)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class FakeCall:
    """A call's running counters and write times, moved by hand."""

    def __init__(self, sid: str) -> None:
        self.counters = CallCounters()
        self.times = Durations()
        self.metrics = CallMetrics(
            sid, counters=lambda: self.counters, write_times=self.times.snapshot
        )


def test_live_calls_are_read_at_scrape_and_ended_ones_are_kept() -> None:
    line = LineMetrics()
    a, b = FakeCall("CA1"), FakeCall("CA2")
    line.call_started(a.metrics)
    line.call_started(b.metrics)
    a.counters = CallCounters(frames_in=100, frames_written=98, frames_out=100, rx_drops=2)
    b.counters = CallCounters(frames_in=50, frames_written=50, frames_out=49, tx_drops=1)
    for ms in (0.1, 0.2, 1.5):
        a.times.add(ms)
    a.metrics.second(rx_q=3, tx_q=5, send_q=0)
    a.metrics.final(0.5, local=True)
    b.metrics.final(0.9, local=False)
    b.metrics.stream_event("reconnect")
    got = scrape(line)
    assert got[("telephony_calls_active", ())] == 2
    assert got[("telephony_frames_total", (("direction", "in"),))] == 150
    assert got[("telephony_frames_total", (("direction", "written"),))] == 148
    assert got[("telephony_frames_total", (("direction", "out"),))] == 149
    assert got[("telephony_drops_total", (("side", "rx"),))] == 2
    assert got[("telephony_drops_total", (("side", "tx"),))] == 1
    assert got[("telephony_stt_write_seconds_count", ())] == 3
    assert got[("telephony_stt_write_seconds_bucket", (("le", "0.001"),))] == 2
    assert got[("telephony_stt_write_seconds_bucket", (("le", "0.0025"),))] == 3
    assert got[("telephony_queue_depth_frames_count", (("queue", "rx"),))] == 1
    assert got[("telephony_queue_depth_frames_bucket", (("le", "2.0"), ("queue", "rx")))] == 0
    assert got[("telephony_queue_depth_frames_bucket", (("le", "5.0"), ("queue", "rx")))] == 1
    assert got[("telephony_final_latency_seconds_count", (("source", "local"),))] == 1
    assert got[("telephony_final_latency_seconds_sum", (("source", "engine"),))] == 0.9
    assert got[("telephony_stt_stream_events_total", (("kind", "reconnect"),))] == 1
    assert got[("telephony_calls_total", (("outcome", "completed"),))] == 0

    # A ends: its final totals (one more frame, dropped at stop) join the line's totals.
    a.metrics.close(CallCounters(frames_in=101, frames_written=98, frames_out=100, rx_drops=3))
    line.call_ended(a.metrics, "stop")
    line.call_ended(a.metrics, "stop")  # twice: counted once
    got = scrape(line)
    assert got[("telephony_calls_active", ())] == 1
    assert got[("telephony_calls_total", (("outcome", "completed"),))] == 1
    assert got[("telephony_frames_total", (("direction", "in"),))] == 151
    assert got[("telephony_drops_total", (("side", "rx"),))] == 3
    assert got[("telephony_stt_write_seconds_count", ())] == 3
    assert got[("telephony_final_latency_seconds_count", (("source", "local"),))] == 1


def test_a_counter_read_mid_update_never_goes_back() -> None:
    line = LineMetrics()
    call = FakeCall("CA1")
    line.call_started(call.metrics)
    call.counters = CallCounters(frames_written=10)
    assert scrape(line)[("telephony_frames_total", (("direction", "written"),))] == 10
    # frames_written - stt_write_errors, read between the two increments, dips by one.
    call.counters = CallCounters(frames_written=9)
    assert scrape(line)[("telephony_frames_total", (("direction", "written"),))] == 10


def test_how_a_call_ended_is_one_of_a_few_outcomes() -> None:
    assert outcome_of("stop") == "completed"
    assert outcome_of("disconnect (code 1006)") == "hangup"
    assert outcome_of("server shutdown (code 1012)") == "shutdown"
    assert outcome_of("server shutdown") == "shutdown"
    assert outcome_of("no message for 5.2 s") == "idle_timeout"
    assert outcome_of("message flood (over 250/s)") == "flood"
    assert outcome_of("anything else") == "other"
