"""The calls tables themselves: their constraints, their indexes, their columns."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from calls import services
from calls.models import Call, MetricSample, Transcript
from calls.rows import CallAnswer
from telephony.metrics.meters import FIGURES, WHEN

pytestmark = pytest.mark.django_db


def test_call_sid_is_unique() -> None:
    services.call_answered(CallAnswer(call_sid="CA1"))
    with pytest.raises(IntegrityError), transaction.atomic():
        Call.objects.create(call_sid="CA1")


def test_the_admin_lists_have_their_indexes() -> None:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Call._meta.db_table)
        samples = connection.introspection.get_constraints(cursor, MetricSample._meta.db_table)
        transcripts = connection.introspection.get_constraints(cursor, Transcript._meta.db_table)
    for name in ("call_created_idx", "call_status_idx", "call_go_idx", "call_engine_idx"):
        assert constraints[name]["index"], name
    assert constraints["call_status_idx"]["columns"] == ["status", "created_at"]
    assert samples["sample_call_second_uniq"]["unique"]
    assert samples["sample_call_second_uniq"]["columns"] == ["call_id", "second"]
    assert transcripts["transcript_call_idx"]["columns"] == ["call_id", "utterance", "at"]


def test_a_sample_row_has_a_column_for_every_figure_of_a_second() -> None:
    # A figure added to SecondSample needs its column (and migration) here, and nothing else.
    columns = {f.name for f in MetricSample._meta.concrete_fields} - {"id", "call"}
    assert columns == set(FIGURES) | (set(WHEN) - {"call_sid"})
