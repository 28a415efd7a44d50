"""The live page's socket through the project's ASGI app: staff only, a snapshot, live figures."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from calls import live, services
from calls.rows import StreamStart
from tests.helpers.figures import said, sample

pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/ws/admin/metrics/"
ORIGIN = (b"origin", b"http://testserver")


@pytest.fixture(scope="module")
def application() -> Any:
    from project.asgi import application

    return application


@pytest.fixture(autouse=True)
def page_origin(settings: Any) -> None:
    """The tests' pages are served from ORIGIN: the one origin allowed to open the socket."""
    settings.LIVE_PAGE_ORIGINS = [ORIGIN[1].decode()]


def session_headers(user: User | None) -> list[tuple[bytes, bytes]]:
    """Return the headers of a browser logged in as `user` (or of nobody)."""
    if user is None:
        return [ORIGIN]
    client = Client()
    client.force_login(user)
    return [ORIGIN, (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


@pytest.fixture
def staff_headers(staff_user: User) -> list[tuple[bytes, bytes]]:
    return session_headers(staff_user)


@pytest.fixture
def plain_headers(plain_user: User) -> list[tuple[bytes, bytes]]:
    return session_headers(plain_user)


@pytest.fixture
def staff_without_permission_headers(transactional_db: None) -> list[tuple[bytes, bytes]]:
    return session_headers(User.objects.create_user("temp", password="x", is_staff=True))


async def refused(application: Any, headers: list[tuple[bytes, bytes]]) -> bool:
    communicator = WebsocketCommunicator(application, PATH, headers=headers)
    connected, _ = await communicator.connect()
    await communicator.disconnect()
    return not connected


async def test_anonymous_is_refused(application: Any) -> None:
    assert await refused(application, session_headers(None))


async def test_a_user_who_is_not_staff_is_refused(
    application: Any, plain_headers: list[tuple[bytes, bytes]]
) -> None:
    assert await refused(application, plain_headers)


async def test_staff_without_the_view_permission_is_refused(
    application: Any, staff_without_permission_headers: list[tuple[bytes, bytes]]
) -> None:
    assert await refused(application, staff_without_permission_headers)


async def test_staff_are_accepted(
    application: Any, staff_headers: list[tuple[bytes, bytes]]
) -> None:
    assert not await refused(application, staff_headers)


async def test_staff_get_a_snapshot_then_live_figures(
    application: Any, staff_headers: list[tuple[bytes, bytes]]
) -> None:
    layer = get_channel_layer()
    communicator = WebsocketCommunicator(application, PATH, headers=staff_headers)
    connected, _ = await communicator.connect()
    assert connected
    snapshot = await communicator.receive_json_from(timeout=5)
    assert snapshot == {"type": "snapshot", "calls": []}

    assert await live.publish_started(layer, call_sid="CA1", stream_sid="MZ1", at=1_800_000_000)
    started = await communicator.receive_json_from(timeout=5)
    assert started == {"type": "started", "call_sid": "CA1", "stream_sid": "MZ1",
                       "at": 1_800_000_000.0}  # fmt: skip

    assert await live.publish_sample(layer, sample("CA1", 7, fps_in=48, rx_drops=2))
    figures = await communicator.receive_json_from(timeout=5)
    assert figures["type"] == "sample"
    assert figures["call_sid"] == "CA1"
    assert (figures["second"], figures["fps_in"], figures["rx_drops"]) == (7, 48, 2)
    assert figures["write_ms"] == pytest.approx(0.2)

    assert await live.publish_ended(layer, call_sid="CA1", reason="stop", at=datetime.now(UTC))
    ended = await communicator.receive_json_from(timeout=5)
    assert (ended["type"], ended["call_sid"], ended["reason"]) == ("ended", "CA1", "stop")
    await communicator.disconnect()
    # Gone from the group: nothing is sent to a closed page.
    assert await live.publish_sample(layer, sample("CA1", 8))
    assert await communicator.receive_nothing(timeout=0.1)


@pytest.fixture
def running_call(transactional_db: None) -> None:
    now = timezone.now()
    call = services.call_stream_started(
        StreamStart(call_sid="CA-run", stream_sid="MZ-run", started_at=now)
    )
    services.metric_samples_create(
        samples=[sample("CA-run", 0), sample("CA-run", 1, rx_q=9)], call_ids={"CA-run": call.pk}
    )
    services.transcripts_create(
        events=[said("CA-run", "final", "hi")], call_ids={"CA-run": call.pk}
    )


async def test_the_snapshot_holds_the_running_calls(
    application: Any, staff_headers: list[tuple[bytes, bytes]], running_call: None
) -> None:
    communicator = WebsocketCommunicator(application, PATH, headers=staff_headers)
    connected, _ = await communicator.connect()
    assert connected
    snapshot = await communicator.receive_json_from(timeout=5)
    (call,) = snapshot["calls"]
    assert call["call_sid"] == "CA-run"
    assert call["stream_sid"] == "MZ-run"
    assert [s["rx_q"] for s in call["samples"]] == [2, 9]
    await communicator.disconnect()


async def test_publishing_without_a_layer_or_with_a_broken_one_never_raises() -> None:
    class Broken:
        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            raise ConnectionError("redis is down")

    assert not await live.publish_sample(None, sample("CA1", 1))
    assert not await live.publish_sample(Broken(), sample("CA1", 1))  # type: ignore[arg-type]
    assert not await live.publish_ended(Broken(), call_sid="CA1", reason="x", at=0.0)  # type: ignore[arg-type]


async def test_a_page_from_another_site_is_refused(
    application: Any, staff_headers: list[tuple[bytes, bytes]], settings: Any
) -> None:
    """The router's origin check as project/asgi.py builds it: the configured origins, exactly."""
    cookie = [h for h in staff_headers if h[0] == b"cookie"]
    assert await refused(application, [(b"origin", b"https://evil.example"), *cookie])
    assert not await refused(application, [ORIGIN, *cookie])
    # A browser sends the session cookie to every port and scheme of the host: none but the
    # configured origin gets in, whatever ALLOWED_HOSTS says.
    settings.ALLOWED_HOSTS = ["*"]
    for other in (
        b"http://testserver:8001",
        b"https://testserver",
        b"http://sub.testserver",
        b"http://testserver.evil.example",
        b"null",
    ):
        assert await refused(application, [(b"origin", other), *cookie]), other
    assert await refused(application, cookie)  # no Origin at all
    settings.LIVE_PAGE_ORIGINS = ["https://line.example.com", "http://testserver:8001"]
    assert not await refused(application, [(b"origin", b"http://testserver:8001"), *cookie])
    assert not await refused(application, [(b"origin", b"https://line.example.com:443"), *cookie])
    assert await refused(application, [ORIGIN, *cookie])


def test_only_exact_origins_can_be_configured() -> None:
    from django.core.exceptions import ImproperlyConfigured

    from project.settings import exact_origins

    assert exact_origins(["https://line.example.com", "http://127.0.0.1:8000"])
    for bad in ("*", "line.example.com", "https://.example.com", "https://x.example/path",
                "ftp://x.example", "https://*.example.com"):  # fmt: skip
        with pytest.raises(ImproperlyConfigured):
            exact_origins([bad])


async def test_what_a_page_sends_is_ignored_and_figures_keep_coming(
    application: Any, staff_headers: list[tuple[bytes, bytes]]
) -> None:
    """Non-JSON, binary and deeply nested frames raised in the consumer: they are ignored."""
    communicator = WebsocketCommunicator(application, PATH, headers=staff_headers)
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from(timeout=5))["type"] == "snapshot"
    for text in ("{not json", "[" * 100_000, '{"type": "metrics.sample"}', "null"):
        await communicator.send_to(text_data=text)
    await communicator.send_to(bytes_data=b"\x00\xff")
    assert await communicator.receive_nothing(timeout=0.1)  # nothing raised, nothing said
    assert await live.publish_sample(get_channel_layer(), sample("CA1", 1))
    assert (await communicator.receive_json_from(timeout=5))["type"] == "sample"
    await communicator.disconnect()


def end_session(user: User) -> None:
    """Log the user out everywhere: delete their sessions from the store."""
    from django.contrib.sessions.models import Session

    for session in Session.objects.all():
        if session.get_decoded().get("_auth_user_id") == str(user.pk):
            session.delete()


def deactivate(user: User) -> None:
    User.objects.filter(pk=user.pk).update(is_active=False)


def take_permission(user: User) -> None:
    user.user_permissions.clear()


@pytest.mark.parametrize("revoke", [end_session, deactivate, take_permission])
async def test_a_watcher_who_may_no_longer_watch_is_closed(
    application: Any, staff_user: User, settings: Any, revoke: Any
) -> None:
    from channels.db import database_sync_to_async

    settings.LIVE_PAGE_RECHECK_S = 0.2
    headers = await database_sync_to_async(session_headers)(staff_user)
    communicator = WebsocketCommunicator(application, PATH, headers=headers)
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from(timeout=5))["type"] == "snapshot"
    assert await communicator.receive_nothing(timeout=0.5)  # checked again: still allowed
    await database_sync_to_async(revoke)(staff_user)
    closed = await communicator.receive_output(timeout=3)
    assert (closed["type"], closed["code"]) == ("websocket.close", 4403)
    # It left the group: figures published now reach no one there.
    assert await live.publish_sample(get_channel_layer(), sample("CA1", 2))
    assert await communicator.receive_nothing(timeout=0.2)
