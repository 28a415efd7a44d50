"""`GET /metrics`: the process's Prometheus metrics, for whoever the settings let in.

Served in front of Django (project/asgi.py), so neither ALLOWED_HOSTS nor the HTTPS redirect
stands between a scraper on loopback and its figures, and no session or CSRF work is done.
Who may scrape (`MetricsAccess`): a client whose address is in METRICS_ALLOW_NETWORKS
(loopback only, by default), or anyone presenting METRICS_BEARER_TOKEN (none by default). A
request that came through a proxy (it carries X-Forwarded-For, Forwarded or X-Real-IP) is
judged by its token alone: its address is the proxy's, and a load balancer on this host would
otherwise make every outside client look like loopback. The figures are rendered in a worker
thread, never on the event loop that carries the calls.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from telephony.metrics.scrape import SCRAPES_REFUSED, line_metrics

log = logging.getLogger(__name__)

PATHS = ("/metrics", "/metrics/")
FORWARDING_HEADERS = (b"x-forwarded-for", b"forwarded", b"x-real-ip")
LOGGED_REFUSALS_MAX = 256  # each (client, reason) is logged once; past this many, none more

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Parse CIDR networks (`127.0.0.0/8`, `::1/128`, `10.1.2.3`); raise ValueError on a bad one."""
    networks = []
    for value in values:
        value = value.strip()
        if not value:
            continue
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError as exc:
            raise ValueError(f"METRICS_ALLOW_NETWORKS: {value!r} is not a network") from exc
    return tuple(networks)


class MetricsAccess:
    """Who may read `/metrics`: the allowed networks, or the bearer of the token (pure)."""

    def __init__(self, networks: Sequence[Network], token: str = "") -> None:
        self.networks = tuple(networks)
        self._token = token.encode()

    def refusal(self, client_host: str | None, headers: Iterable[tuple[bytes, bytes]]) -> str:
        """Return why a request is refused ("" when it is allowed)."""
        given = b""
        proxied = False
        for name, value in headers:
            name = name.lower()
            if name == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                given = credentials.strip() if scheme.lower() == b"bearer" else b"\x00"
            elif name in FORWARDING_HEADERS:
                proxied = True
        if given:
            ok = bool(self._token) and hmac.compare_digest(given, self._token)
            return "" if ok else "bad_token"
        if proxied:
            return "proxied"
        return "" if self._in_networks(client_host) else "not_allowed"

    def _in_networks(self, host: str | None) -> bool:
        if not host:
            return False  # a Unix socket or an unknown peer: only a token lets it in
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        return any(address in network for network in self.networks)


def access_from_settings() -> MetricsAccess:
    """Build the access rule from METRICS_ALLOW_NETWORKS and METRICS_BEARER_TOKEN."""
    from django.conf import settings

    return MetricsAccess(
        parse_networks(settings.METRICS_ALLOW_NETWORKS), settings.METRICS_BEARER_TOKEN
    )


def render(registry: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """Return the registry's metrics in the format the scraper accepts, and its content type."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class MetricsEndpoint:
    """An ASGI app that answers `/metrics` itself and passes every other request to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        access: MetricsAccess | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.app = app
        self.access = access or access_from_settings()
        self.registry = registry
        line_metrics(registry)  # the line's metrics are there from the start, calls or not
        self._logged: set[tuple[str, str]] = set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in PATHS:
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(send, 405, b"GET only\n", extra=[(b"allow", b"GET, HEAD")])
            return
        client = scope.get("client") or (None, None)
        headers = scope.get("headers", ())
        why = self.access.refusal(client[0], headers)
        if why:
            self._refused(str(client[0]), why)
            await _respond(
                send, 403, f"forbidden: {why} (see docs/operations.md, Metrics)\n".encode()
            )
            return
        accept = next((v.decode("latin-1") for k, v in headers if k.lower() == b"accept"), "")
        body, content_type = await asyncio.to_thread(render, self.registry, accept)
        if scope["method"] == "HEAD":
            body = b""
        await _respond(send, 200, body, content_type=content_type)

    def _refused(self, client: str, why: str) -> None:
        """Count a refusal; log it once per client and reason."""
        SCRAPES_REFUSED.labels(why).inc()
        key = (client, why)
        if key not in self._logged and len(self._logged) < LOGGED_REFUSALS_MAX:
            self._logged.add(key)
            log.warning("/metrics refused to %s: %s (counted; logged once)", client, why)


async def _respond(
    send: Any,
    status: int,
    body: bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    extra: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    headers = [(b"content-type", content_type.encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
