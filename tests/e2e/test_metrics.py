"""/metrics on a real server after a real (simulated) call: the figures are the call's own."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import urllib.request

import pytest
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from telephony.management.commands.simulate_call import lead_silence_s
from telephony.testing.caller import dial
from tests.helpers.figures import wait_for
from tests.helpers.recordings import order_status_ulaw
from tests.helpers.serverlog import wait_for as wait_for_log


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def row(database: str, call_sid: str) -> sqlite3.Row | None:
    with sqlite3.connect(database) as db:
        db.row_factory = sqlite3.Row
        return db.execute(
            "SELECT id, frames_in, frames_out, rx_drops, tx_drops, finals, ended_at, extra "
            "FROM calls_call WHERE call_sid = ?",
            (call_sid,),
        ).fetchone()


@pytest.mark.parametrize("server_kind", ["uvicorn"])
def test_metrics_after_a_call_match_the_calls_own_row(server_factory, server_kind) -> None:
    server = server_factory(env={"STT_ENGINE": "whisper"}, server=server_kind)
    before = scrape(server.base_url)
    assert before[("telephony_calls_active", ())] == 0
    report = asyncio.run(
        dial(
            server.base_url,
            auth_token=settings.TWILIO_AUTH_TOKEN,
            audio=order_status_ulaw(),
            lead_silence_s=lead_silence_s(None),
            tail_silence_s=3.0,
        )
    )
    assert report.error is None, report.error
    wait_for_log(server, f"call={report.call_sid} ended (stop)")
    database = server.env["DATABASE_URL"].removeprefix("sqlite:///")
    assert wait_for(lambda: (r := row(database, report.call_sid)) is not None and r["ended_at"])
    call = row(database, report.call_sid)
    with sqlite3.connect(database) as db:
        finals = [
            latency
            for (latency,) in db.execute(
                "SELECT latency_ms FROM calls_transcript WHERE call_id = ? AND kind = 'final'",
                (call["id"],),
            )
        ]
        seconds = db.execute(
            "SELECT COUNT(*) FROM calls_metricsample WHERE call_id = ?", (call["id"],)
        ).fetchone()[0]

    got = scrape(server.base_url)
    assert got[("telephony_calls_active", ())] == 0
    assert got[("telephony_calls_total", (("outcome", "completed"),))] == 1
    # Frames and drops: the totals the call's row holds.
    assert got[("telephony_frames_total", (("direction", "in"),))] == call["frames_in"]
    assert call["frames_in"] == report.frames_sent
    assert got[("telephony_frames_total", (("direction", "out"),))] == call["frames_out"]
    assert got[("telephony_drops_total", (("side", "rx"),))] == call["rx_drops"]
    assert got[("telephony_drops_total", (("side", "tx"),))] == call["tx_drops"]
    # One STT write time per frame written; one queue sample per recorded second.
    written = got[("telephony_frames_total", (("direction", "written"),))]
    assert written == json.loads(call["extra"])["frames_written"]
    assert got[("telephony_stt_write_seconds_count", ())] == written > 0
    assert got[("telephony_queue_depth_frames_count", (("queue", "rx"),))] == seconds
    # One FINAL latency sample per FINAL, summing to the FINALs' own latencies.
    assert finals
    assert len(finals) == call["finals"]
    samples = sum(
        got[("telephony_final_latency_seconds_count", (("source", s),))]
        for s in ("local", "engine")
    )
    assert samples == len(finals)
    total_s = sum(
        got[("telephony_final_latency_seconds_sum", (("source", s),))] for s in ("local", "engine")
    )
    assert total_s == pytest.approx(sum(finals) / 1000, abs=1e-3)
    # The process's own figures come with them (prometheus_client's process collector).
    assert got[("process_resident_memory_bytes", ())] > 0
