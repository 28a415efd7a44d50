"""Recordings in S3-compatible object storage (django-storages), against moto's S3 server.

moto's server mode speaks the S3 API over HTTP on loopback, so the real boto3 client and
django-storages' S3Storage run unchanged: what production runs, pointed at another endpoint.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from calls import recordings
from calls.models import Recording
from telephony.testing.server_process import free_port, port_answers
from telephony.tts.wav import parse_wav
from tests.helpers.recorded_calls import a_call, body, listener, spool_file

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

ACCESS = {"aws_access_key_id": "test-key", "aws_secret_access_key": "test-secret"}


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run moto's S3 server on a loopback port for this module."""
    pytest.importorskip("moto.server")
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_answers(port):
            assert process.poll() is None, "moto's server exited"
            assert time.monotonic() < deadline, "moto's server did not listen"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.fixture
def bucket(s3_endpoint: str, settings, tmp_path: Path) -> tuple[str, object]:
    """A private bucket of its own, and STORAGES["recordings"] on it, as the README sets it."""
    import boto3

    name = f"line-recordings-{uuid.uuid4().hex[:8]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **ACCESS)
    client.create_bucket(Bucket=name)
    settings.STORAGES = {
        **settings.STORAGES,
        "recordings": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": name,
                "endpoint_url": s3_endpoint,
                "region_name": "us-east-1",
                "access_key": ACCESS["aws_access_key_id"],
                "secret_key": ACCESS["aws_secret_access_key"],
                "default_acl": "private",
                "file_overwrite": False,
                "querystring_auth": True,
            },
        },
    }
    settings.RECORDING_SPOOL_DIR = tmp_path / "spool"
    return name, client


def test_recordings_are_stored_served_and_expired_in_an_s3_bucket(bucket, client, tmp_path):
    name, s3 = bucket
    call_pk = a_call("CA1")
    finished = spool_file(tmp_path, "CA1")
    original = finished.path.read_bytes()
    recording = recordings.store(finished)

    stored = s3.get_object(Bucket=name, Key=recording.file.name)["Body"].read()
    assert stored == original
    assert parse_wav(stored).channels == 2
    grants = s3.get_object_acl(Bucket=name, Key=recording.file.name)["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]  # the owner only: private

    client.force_login(listener())
    url = f"/admin/calls/call/{call_pk}/recording/{recording.pk}/"
    response = client.get(url, HTTP_RANGE="bytes=58-377")
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 58-377/{len(original)}"
    assert body(response) == original[58:378]

    Recording.objects.filter(pk=recording.pk).update(
        created_at=timezone.now() - timedelta(days=100)
    )
    out = StringIO()
    call_command("calls_expire_recordings", "--days", "30", stdout=out)
    assert "removed 1 recording(s)" in out.getvalue()
    assert s3.list_objects_v2(Bucket=name).get("KeyCount", 0) == 0
    call_command("calls_expire_recordings", "--days", "30", stdout=StringIO())  # again: no error
