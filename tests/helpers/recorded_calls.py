"""A call with a Hebrew transcript and a recording, for the recording and review tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from asgiref.sync import async_to_sync
from django.contrib.auth.models import Permission, User

from calls import services
from calls.rows import EventData
from telephony.recording.tap import RecordingTap
from telephony.recording.writer import Finished, RecordingWriter
from telephony.testing.server_process import ServerProcess
from tests.helpers.calls import START, started
from tests.helpers.figures import T0, said

HEBREW = "שלום, אני רוצה לבדוק את ההזמנה שלי 123."


def spool_file(tmp_path: Path, call_sid: str, frames: int = 100) -> Finished:
    """Write a finished spool file through the real writer: caller = n, line = 200 + n."""
    got: list[Finished] = []
    writer = RecordingWriter(spool_dir=tmp_path / "spool", store=got.append, threaded=False)
    tap = RecordingTap(call_sid)
    writer.add(tap, stream_sid="MZ" + call_sid)
    for n in range(frames):
        tap.caller(bytes([n % 200]) * 160)
        tap.line(bytes([200 + n % 50]) * 160, n)
    tap.close(frames)
    writer.run_once()
    writer._store_one = lambda finished: got.append(finished)  # keep the file: no unlink
    writer.store_ready()
    return got[0]


def body(response) -> bytes:
    """Read a streamed response: the recording view streams from an async generator (ASGI)."""

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(collect)()


def a_call(call_sid: str = "CA1") -> int:
    call = started(call_sid, stream_sid="MZ" + call_sid)
    ids = {call_sid: call.pk}
    services.transcripts_create(
        events=[
            said(call_sid, "final", HEBREW, offset_ms=3000, latency_ms=400.0, at=T0 + 6.4),
            said(call_sid, "final", "and in English", utterance=2, offset_ms=8000, at=T0 + 9.5),
        ],
        call_ids=ids,
    )
    services.call_events_create(
        events=[
            EventData(
                call_sid=call_sid,
                kind="prompt",
                detail="ברוכים הבאים",
                data={"label": "greeting", "offset_ms": 0, "duration_ms": 4000},
                at=START,
            ),
            EventData(
                call_sid=call_sid,
                kind="barge_in",
                detail="greeting",
                data={"prompt": "greeting", "heard_ms": 3300, "total_ms": 4000},
                at=START,
            ),
        ],
        call_ids=ids,
    )
    return call.pk


def listener(username: str = "listener", *, listen: bool = True) -> User:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_call"))
    if listen:
        user.user_permissions.add(Permission.objects.get(codename="listen_recording"))
    return user


def recording_server(
    server_factory: Callable[..., ServerProcess], tmp_path: Path, **env: str
) -> ServerProcess:
    """A real server that records its calls, to files under `tmp_path` (STT_ENGINE=none)."""
    return server_factory(
        env={
            "RECORDING": "true",
            "MEDIA_ROOT": str(tmp_path / "media"),
            "RECORDING_SPOOL_DIR": str(tmp_path / "spool"),
            "STT_ENGINE": "none",
            **env,
        }
    )
