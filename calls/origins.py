"""Which pages may open the live figures' WebSocket: the configured public origins, exactly.

channels' `AllowedHostsOriginValidator` accepts any origin while `ALLOWED_HOSTS` is `*` (the
development default) and any scheme or port of an allowed host otherwise. A browser sends the
admin's session cookie with a WebSocket opened by any page on the same host, whatever its port,
so a page on another port could read the live figures. This validator accepts only the origins
in `LIVE_PAGE_ORIGINS` (scheme, host and port; read at each upgrade).
"""

from __future__ import annotations

from typing import Any

from channels.security.websocket import OriginValidator
from django.conf import settings


class PublicOriginValidator(OriginValidator):
    """An `OriginValidator` over `settings.LIVE_PAGE_ORIGINS` (exact origins only)."""

    def __init__(self, application: Any) -> None:
        super().__init__(application, allowed_origins=[])

    @property  # type: ignore[override]
    def allowed_origins(self) -> list[str]:
        return list(settings.LIVE_PAGE_ORIGINS)

    @allowed_origins.setter
    def allowed_origins(self, value: list[str]) -> None:
        """Ignored: the setting is read at each upgrade."""
