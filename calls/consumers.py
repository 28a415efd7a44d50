"""The live page's WebSocket: a snapshot of the running calls, then their figures as published.

The page only listens: whatever it sends (text, binary, JSON or not) is ignored. Who watches is
checked at the upgrade and again every `LIVE_PAGE_RECHECK_S`: once the session is gone (logged
out, deleted, expired) or the account may no longer view calls (deactivated, no longer staff,
permission removed), the socket is closed. Which pages may open it is `calls.origins`' rule.
"""

import asyncio
import logging
from importlib import import_module
from typing import Any

from channels.auth import get_user
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from calls.live import METRICS_GROUP
from calls.selectors import calls_live_snapshot

log = logging.getLogger(__name__)

VIEW_PERMISSION = "calls.view_call"
CLOSE_NO_LONGER_ALLOWED = 4403


def may_watch(user: Any) -> bool:
    """Return whether a user may see the live figures: active staff who may view calls."""
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_active
        and user.is_staff
        and user.has_perm(VIEW_PERMISSION)
    )


async def still_may_watch(scope: dict[str, Any]) -> bool:
    """Whether the session the socket was opened with still belongs to someone who may watch.

    Read afresh from the session store and the database (the scope's session and user are
    what they were at the upgrade).
    """
    key = getattr(scope.get("session"), "session_key", None)
    if not key:
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(key)
    user = await get_user({"session": store})
    return await database_sync_to_async(may_watch)(user)


class LiveMetricsConsumer(AsyncJsonWebsocketConsumer):
    """Relay the call sessions' published figures to one staff member's live page."""

    recheck: asyncio.Task[None] | None = None
    joined = False
    closed = False  # by us: nothing more is sent

    async def connect(self) -> None:
        """Refuse anyone but staff; otherwise join the group and send the snapshot."""
        user = self.scope.get("user")
        # has_perm may read the database (groups, permissions).
        if not await database_sync_to_async(may_watch)(user):
            await self.close()  # before accept: the handshake is refused with HTTP 403
            return
        # Join before reading the snapshot: a call starting in between is then not missed.
        await self.channel_layer.group_add(METRICS_GROUP, self.channel_name)
        self.joined = True
        await self.accept()
        self.recheck = asyncio.create_task(self._recheck(), name="live-page-recheck")
        calls = await database_sync_to_async(calls_live_snapshot)(now=timezone.now())
        await self.send_json({"type": "snapshot", "calls": calls})

    async def disconnect(self, code: int) -> None:
        """Leave the group."""
        if self.recheck is not None and self.recheck is not asyncio.current_task():
            self.recheck.cancel()
        await self._leave()

    async def _leave(self) -> None:
        if self.joined:
            self.joined = False
            await self.channel_layer.group_discard(METRICS_GROUP, self.channel_name)

    async def receive(self, text_data: Any = None, bytes_data: Any = None, **kwargs: Any) -> None:
        """Ignore what the page sends (it only listens), whatever it is."""

    async def _recheck(self) -> None:
        """Close the socket once its watcher may no longer watch."""
        while True:
            await asyncio.sleep(settings.LIVE_PAGE_RECHECK_S)
            try:
                allowed = await still_may_watch(self.scope)
            except Exception as exc:  # the database is down: keep the page, ask again later
                log.warning("live page: could not check its watcher again (%s)", exc)
                continue
            if not allowed:
                log.info("live page closed: its session or account no longer allows it")
                self.closed = True
                await self._leave()
                await self.close(code=CLOSE_NO_LONGER_ALLOWED)
                return

    async def _relay(self, message: dict[str, Any], kind: str) -> None:
        if not self.closed:  # figures already queued for a page just closed are dropped
            await self.send_json({**message, "type": kind})

    async def metrics_started(self, message: dict[str, Any]) -> None:
        """Called when a call's stream starts."""
        await self._relay(message, "started")

    async def metrics_sample(self, message: dict[str, Any]) -> None:
        """Called with one second's figures of one call."""
        await self._relay(message, "sample")

    async def metrics_said(self, message: dict[str, Any]) -> None:
        """Called with what was last said in a call (a FINAL, a prompt)."""
        await self.send_json({**message, "type": "said"})

    async def metrics_ended(self, message: dict[str, Any]) -> None:
        """Called when a call's stream ends."""
        await self._relay(message, "ended")
