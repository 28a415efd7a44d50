"""Recordings in storage and in the admin: stored, served with Range to those allowed, expired."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from calls import recordings
from calls.models import Recording, recordings_storage
from telephony.recording.tap import RecordingTap
from telephony.tts.wav import parse_wav
from tests.helpers.calls import started
from tests.helpers.recorded_calls import HEBREW, a_call, body, listener, spool_file

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def storage(settings, tmp_path: Path) -> Path:
    """Recordings under a media root of the test's own."""
    root = tmp_path / "media" / "recordings"
    settings.STORAGES = {
        **settings.STORAGES,
        "recordings": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(root)},
        },
    }
    settings.RECORDING_SPOOL_DIR = tmp_path / "spool"
    return root


def test_a_finished_recording_is_stored_by_day_with_its_row(tmp_path, storage):
    call_pk = a_call()
    finished = spool_file(tmp_path, "CA1")
    recording = recordings.store(finished)
    day = timezone.now().strftime("%Y/%m/%d")
    assert recording.file.name == f"{day}/CA1.MZCA1.wav"
    assert (storage / recording.file.name).read_bytes() == finished.path.read_bytes()
    assert recording.call_id == call_pk
    assert (recording.duration_ms, recording.complete) == (2000, True)
    assert recording.size == finished.path.stat().st_size
    audio = parse_wav((storage / recording.file.name).read_bytes())
    assert audio.data[0::2][:160] == bytes([0]) * 160


class TestTheRecordingView:
    @pytest.fixture
    def recording(self, tmp_path) -> Recording:
        a_call()
        return recordings.store(spool_file(tmp_path, "CA1"))

    def url(self, recording: Recording) -> str:
        return f"/admin/calls/call/{recording.call_id}/recording/{recording.pk}/"

    def test_anonymous_users_get_no_audio(self, client: Client, recording: Recording):
        response = client.get(self.url(recording))
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]

    def test_staff_without_the_permission_get_no_audio(self, client, recording):
        client.force_login(listener(listen=False))
        assert client.get(self.url(recording)).status_code == 403
        page = client.get(f"/admin/calls/call/{recording.call_id}/change/").content.decode()
        assert 'id="call-audio"' not in page
        assert 'id="no-listen"' in page

    def test_the_whole_file_and_any_range_of_it(self, client, recording):
        client.force_login(listener())
        whole = recordings_storage().open(recording.file.name).read()
        response = client.get(self.url(recording))
        assert response.status_code == 200
        assert response["Accept-Ranges"] == "bytes"
        assert response["Content-Type"] == "audio/wav"
        assert response["Content-Length"] == str(len(whole))
        assert body(response) == whole

        response = client.get(self.url(recording), HTTP_RANGE="bytes=1000-1999")
        assert response.status_code == 206
        assert response["Content-Range"] == f"bytes 1000-1999/{len(whole)}"
        assert body(response) == whole[1000:2000]

        response = client.get(self.url(recording), HTTP_RANGE="bytes=-100")
        assert body(response) == whole[-100:]
        response = client.get(self.url(recording), HTTP_RANGE="bytes=5000-")
        assert body(response) == whole[5000:]

        response = client.get(self.url(recording), HTTP_RANGE=f"bytes={len(whole)}-")
        assert response.status_code == 416
        assert response["Content-Range"] == f"bytes */{len(whole)}"

        response = client.get(self.url(recording) + "?download=1")
        assert response["Content-Disposition"] == 'attachment; filename="CA1.wav"'
        assert {"private", "no-store"} <= set(response["Cache-Control"].split(", "))

    def test_a_recording_of_another_call_is_not_found(self, client, recording):
        client.force_login(listener())
        other = started("CA2", stream_sid="MZ2")
        url = f"/admin/calls/call/{other.pk}/recording/{recording.pk}/"
        assert client.get(url).status_code == 404

    def test_a_file_gone_from_storage_is_not_found(self, client, recording, storage):
        client.force_login(listener())
        (storage / recording.file.name).unlink()
        assert client.get(self.url(recording)).status_code == 404


def test_the_call_page_plays_the_call_beside_its_timeline(client, tmp_path):
    call_pk = a_call()
    recording = recordings.store(spool_file(tmp_path, "CA1"))
    client.force_login(listener())
    page = client.get(f"/admin/calls/call/{call_pk}/change/").content.decode()
    assert f'src="/admin/calls/call/{call_pk}/recording/{recording.pk}/"' in page
    assert f'src="/admin/calls/call/{call_pk}/captions.vtt" default' in page
    # Both sides on the timeline, in time order, each text in its own direction.
    assert page.index("ברוכים הבאים") < page.index(HEBREW) < page.index("and in English")
    assert f'<span class="text" dir="auto">{HEBREW}</span>' in page
    assert 'data-start-ms="3000"' in page
    assert "cut by the caller" in page
    assert f"/admin/calls/call/{call_pk}/transcript.json" in page


def test_captions_and_transcripts_from_both_sides(client):
    call_pk = a_call()
    client.force_login(listener(listen=False))  # the transcript needs only view_call
    vtt = client.get(f"/admin/calls/call/{call_pk}/captions.vtt")
    assert vtt["Content-Type"] == "text/vtt; charset=utf-8"
    text = vtt.content.decode()
    assert text.startswith("WEBVTT\n\n")
    assert "00:00:00.000 --> 00:00:03.300\n<v line>ברוכים הבאים" in text  # cut at the barge-in
    # The FINAL came at 6.4 s, 400 ms after the speech ended.
    assert f"00:00:03.000 --> 00:00:06.000\n<v caller>{HEBREW}" in text

    plain = client.get(f"/admin/calls/call/{call_pk}/transcript.txt")
    assert plain["Content-Disposition"] == 'attachment; filename="CA1.txt"'
    assert f"[0:03.0] caller: {HEBREW}" in plain.content.decode()
    assert "[0:00.0] line: ברוכים הבאים (interrupted)" in plain.content.decode()

    data = json.loads(client.get(f"/admin/calls/call/{call_pk}/transcript.json").content)
    assert [(c["side"], c["text"]) for c in data["cues"]] == [
        ("line", "ברוכים הבאים"),
        ("caller", HEBREW),
        ("caller", "and in English"),
    ]
    assert client.get(f"/admin/calls/call/{call_pk}/transcript.xml").status_code == 404


def test_the_transcript_is_for_staff_who_may_view_calls(client, plain_user):
    call_pk = a_call()
    client.force_login(plain_user)
    assert client.get(f"/admin/calls/call/{call_pk}/transcript.txt").status_code == 302


def test_expired_recordings_are_deleted_and_reported_once(tmp_path, storage, settings):
    a_call("CA1")
    a_call("CA2")
    old = recordings.store(spool_file(tmp_path, "CA1"))
    new = recordings.store(spool_file(tmp_path, "CA2"))
    Recording.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=31))
    settings.RECORDING_RETENTION_DAYS = 30

    out = StringIO()
    call_command("calls_expire_recordings", "--dry-run", stdout=out)
    assert "would remove 1 recording(s)" in out.getvalue()
    assert (storage / old.file.name).exists()

    out = StringIO()
    call_command("calls_expire_recordings", stdout=out)
    assert f"removed {old.file.name} (call CA1" in out.getvalue()
    assert "removed 1 recording(s)" in out.getvalue()
    assert not (storage / old.file.name).exists()
    assert list(Recording.objects.values_list("pk", flat=True)) == [new.pk]
    assert (storage / new.file.name).exists()

    out = StringIO()
    call_command("calls_expire_recordings", stdout=out)  # again (cron): nothing more, no error
    assert "removed 0 recording(s)" in out.getvalue()

    # A file someone already deleted by hand is no error either.
    Recording.objects.filter(pk=new.pk).update(created_at=timezone.now() - timedelta(days=40))
    (storage / new.file.name).unlink()
    out = StringIO()
    call_command("calls_expire_recordings", stdout=out)
    assert "removed 1 recording(s)" in out.getvalue()
    assert not Recording.objects.exists()


@pytest.mark.django_db(transaction=True)  # the process's store thread writes the row
def test_recording_on_gives_each_call_a_tap_and_off_gives_none(settings):
    settings.RECORDING = False
    assert recordings.recording_tap("CA1", "MZ1") is None
    settings.RECORDING = True
    tap = recordings.recording_tap("CA1", "MZ1")
    assert isinstance(tap, RecordingTap)
    tap.close(0)
    assert recordings.flush(5.0)
    assert Recording.objects.get().duration_ms == 0  # an empty call is still a (short) file


def test_a_spool_file_a_dead_process_left_is_stored_at_start(tmp_path, storage):
    a_call("CA1")
    finished = spool_file(tmp_path, "CA1", frames=50)
    cut = finished.path.with_name(finished.path.name + ".part")
    finished.path.rename(cut)
    assert recordings.store_left_behind() == 1
    recording = Recording.objects.get()
    assert (recording.complete, recording.duration_ms) == (False, 1000)
    assert not cut.exists()
    assert recordings.store_left_behind() == 0
