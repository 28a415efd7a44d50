"""Call review in the admin: who may see it, the list, its filters and search, the call page."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client

from calls import services
from calls.models import Call
from calls.rows import CallAnswer, EventData, GreetingPlayed, StreamEnd, StreamStart
from telephony.metrics.meters import FIGURES
from tests.helpers.figures import T0, said, sample

pytestmark = pytest.mark.django_db

START = datetime.fromtimestamp(T0, tz=UTC)
LIVE_URL = "/admin/calls/call/live/"
LIST_URL = "/admin/calls/call/"


def finished_call(call_sid: str = "CA1", *, drops: int = 0, engine: str = "whisper") -> Call:
    """Write a whole call the way the recorder does."""
    services.call_answered(
        CallAnswer(call_sid=call_sid, from_number="+972501112233", to_number="+97231234567")
    )
    call = services.call_stream_started(
        StreamStart(
            call_sid=call_sid, stream_sid="MZ" + call_sid, started_at=START, stt_engine=engine
        )
    )
    ids = {call_sid: call.pk}
    services.transcripts_create(
        events=[
            said(call_sid, "partial", "I want"),
            said(call_sid, "partial", "I want to book", at=T0 + 1.7),
            said(call_sid, "final", "I want to book a table", latency_ms=345.0, at=T0 + 2.2),
            said(call_sid, "partial", "for two", utterance=2, offset_ms=4200),
            said(call_sid, "final", "for two", utterance=2, local=True, offset_ms=4200),
            said(call_sid, "revision", "for two people", utterance=2, offset_ms=4200),
        ],
        call_ids=ids,
    )
    samples = [sample(call_sid, s) for s in range(12)]
    if drops:
        samples[6] = sample(call_sid, 6, rx_drops=drops, rx_drops_total=drops)
    services.metric_samples_create(samples=samples, call_ids=ids)
    services.call_events_create(
        events=[
            EventData(call_sid=call_sid, kind="dtmf", detail="7", at=START),
            EventData(
                call_sid=call_sid, kind="mark", detail="greeting", data={"rtt_ms": 80}, at=START
            ),
        ],
        call_ids=ids,
    )
    services.call_greeting_played(
        GreetingPlayed(call_sid=call_sid, at=START + timedelta(seconds=2))
    )
    return services.call_ended(
        StreamEnd(
            call_sid=call_sid,
            reason="stop",
            ended_at=START + timedelta(seconds=12),
            totals={"frames_in": 600, "frames_out": 600, "rx_drops": drops, "tx_drops": 0},
        )
    )


@pytest.fixture
def staff_client(client: Client, staff_user: User) -> Client:
    client.force_login(staff_user)
    return client


def test_the_live_page_is_for_staff_who_may_view_calls(client: Client, plain_user: User) -> None:
    response = client.get(LIVE_URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    client.force_login(plain_user)
    assert client.get(LIVE_URL).status_code == 302  # not staff: the admin's login again
    plain_user.is_staff = True
    plain_user.save()
    assert client.get(LIVE_URL).status_code == 403  # staff, but may not view calls


def test_the_live_page_opens_its_socket(staff_client: Client) -> None:
    response = staff_client.get(LIVE_URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert '<table id="live-calls">' in html
    assert '"/ws/admin/metrics/"' in html  # json_script: where the page connects
    assert "new WebSocket(" in html


def test_the_live_page_has_a_column_for_every_figure(staff_client: Client) -> None:
    html = staff_client.get(LIVE_URL).content.decode()
    headers = re.findall(r"<th(?: class=\"sid\")?>([^<]*)</th>", html)
    assert headers == [
        "call", "caller", "age", "RX fps_in", "RX q", "RX drops", "RX drops total", "write_ms",
        "TX fps", "TX q", "TX drops", "TX drops total", "send q", "mark rtt", "trend",
        "last words",
    ]  # fmt: skip
    assert '<td colspan="16">No running calls.</td>' in html
    # The script fills the cells of the same figures, in the same order.
    figures = re.search(r'<script id="live-figures" type="application/json">(.*?)</script>', html)
    assert figures is not None
    assert json.loads(figures.group(1)) == list(FIGURES)


def test_the_index_and_the_list_link_to_the_live_page(staff_client: Client) -> None:
    assert f'href="{LIVE_URL}"' in staff_client.get("/admin/").content.decode()
    assert f'href="{LIVE_URL}"' in staff_client.get(LIST_URL).content.decode()


def test_the_list_shows_status_duration_caller_finals_drops_and_verdict(
    staff_client: Client,
) -> None:
    finished_call("CA-good")
    finished_call("CA-bad", drops=3)
    html = staff_client.get(LIST_URL).content.decode()
    assert "CA-good" in html
    assert "CA-bad" in html
    assert "+972501112233" in html
    assert "0:12" in html  # duration
    assert html.count(">GO<") == 1
    assert html.count(">NO-GO<") == 1
    assert ">3 / 0<" in html  # drops, highlighted
    assert html.count('<td class="field-finals">2</td>') == 2


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("go__exact=1", {"CA-good"}),
        ("go__exact=0", {"CA-bad"}),
        ("go__isnull=True", {"CA-running"}),
        ("status__exact=active", {"CA-running"}),
        ("stt_engine=google", {"CA-bad"}),
        ("q=CA-good", {"CA-good"}),
        ("q=+972501112233", {"CA-good", "CA-bad"}),
        ("q=book+a+table", {"CA-good", "CA-bad"}),
        ("q=nobody+said+this", set()),
    ],
)
def test_filters_and_search(staff_client: Client, query: str, expected: set[str]) -> None:
    finished_call("CA-good")
    finished_call("CA-bad", drops=3, engine="google")
    services.call_stream_started(
        StreamStart(call_sid="CA-running", stream_sid="MZ9", started_at=START)
    )
    response = staff_client.get(f"{LIST_URL}?{query}")
    assert response.status_code == 200
    shown = {c.call_sid for c in response.context["cl"].result_list}
    assert shown == expected
    # A search through the transcript joins many rows per call: each call is listed once.
    assert len(response.context["cl"].result_list) == len(expected)


def test_the_call_page_shows_the_conversation_events_and_charts(staff_client: Client) -> None:
    call = finished_call("CA1", drops=2)
    response = staff_client.get(f"{LIST_URL}{call.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    conversation = html[html.index('id="conversation"') : html.index('id="charts"')]
    assert "greeting played at 0:02.0" in conversation
    assert "I want to book a table" in conversation
    assert "latency 345 ms" in conversation
    assert "<summary>2 partials</summary>" in conversation  # the history, folded
    assert "I want to book</li>" in conversation
    assert "for two people" in conversation  # the engine's revision wins ...
    assert '<div class="was">for two</div>' in conversation  # ... over the local FINAL
    assert conversation.index("I want to book a table") < conversation.index("for two people")
    charts = html[html.index('id="charts"') : html.index('id="call-events"')]
    assert charts.count('<svg viewBox="0 0 720 120"') == 4
    assert "<title>6 s: 2</title>" in charts  # the second with drops
    events = html[html.index('id="call-events"') :]
    assert "DTMF" in events
    assert "rtt_ms" in events
    assert ">NO-GO<" in html
    assert "RX drops=2" in html


def test_calls_are_read_only(staff_client: Client, admin_client: Client) -> None:
    call = finished_call("CA1")
    for client in (staff_client, admin_client):
        page = client.get(f"{LIST_URL}{call.pk}/change/").content.decode()
        assert 'name="_save"' not in page
        assert client.post(f"{LIST_URL}{call.pk}/change/", {"status": "failed"}).status_code == 403
        assert client.get(f"{LIST_URL}add/").status_code == 403
        assert client.get(f"{LIST_URL}{call.pk}/delete/").status_code == 403
    assert Call.objects.get().status == "ended"
