"""`manage.py calls_mark_interrupted`: the start-up sweep of unfinished calls, run by hand."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from calls import services
from calls.models import Call
from calls.rows import CallAnswer

pytestmark = pytest.mark.django_db


def test_the_sweep_runs_as_a_command() -> None:
    services.call_answered(CallAnswer(call_sid="CA-old", at=timezone.now() - timedelta(minutes=5)))
    services.call_answered(CallAnswer(call_sid="CA-new"))
    out = StringIO()
    call_command("calls_mark_interrupted", "--stale-after", "30", stdout=out)
    assert out.getvalue().strip() == "1 call(s) closed"
    assert dict(Call.objects.values_list("call_sid", "status")) == {
        "CA-old": "failed",
        "CA-new": "answered",
    }
