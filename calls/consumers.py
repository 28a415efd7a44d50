"""The live page's WebSocket: a snapshot of the running calls, then their figures as published."""

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils import timezone

from calls.live import METRICS_GROUP
from calls.selectors import calls_live_snapshot

VIEW_PERMISSION = "calls.view_call"


def may_watch(user: Any) -> bool:
    """Return whether a user may see the live figures: active staff who may view calls."""
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_active
        and user.is_staff
        and user.has_perm(VIEW_PERMISSION)
    )


class LiveMetricsConsumer(AsyncJsonWebsocketConsumer):
    """Relay the call sessions' published figures to one staff member's live page."""

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
        calls = await database_sync_to_async(calls_live_snapshot)(now=timezone.now())
        await self.send_json({"type": "snapshot", "calls": calls})

    async def disconnect(self, code: int) -> None:
        """Leave the group."""
        if getattr(self, "joined", False):
            await self.channel_layer.group_discard(METRICS_GROUP, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Ignore what the page sends (it only listens)."""

    async def metrics_started(self, message: dict[str, Any]) -> None:
        """Called when a call's stream starts."""
        await self.send_json({**message, "type": "started"})

    async def metrics_sample(self, message: dict[str, Any]) -> None:
        """Called with one second's figures of one call."""
        await self.send_json({**message, "type": "sample"})

    async def metrics_said(self, message: dict[str, Any]) -> None:
        """Called with what was last said in a call (a FINAL, a prompt)."""
        await self.send_json({**message, "type": "said"})

    async def metrics_ended(self, message: dict[str, Any]) -> None:
        """Called when a call's stream ends."""
        await self.send_json({**message, "type": "ended"})
