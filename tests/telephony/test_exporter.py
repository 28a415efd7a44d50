"""/metrics: who may read it (loopback by default, a token, never through a proxy by address)."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from telephony.exporter import MetricsAccess, MetricsEndpoint, parse_networks
from telephony.testing.server_process import free_port

LOOPBACK = parse_networks(["127.0.0.0/8", "::1/128"])


def test_by_default_only_loopback_may_scrape() -> None:
    access = MetricsAccess(LOOPBACK)
    assert access.refusal("127.0.0.1", []) == ""
    assert access.refusal("127.10.0.3", []) == ""
    assert access.refusal("::1", []) == ""
    assert access.refusal("::ffff:127.0.0.1", []) == ""  # IPv4 loopback on a dual-stack socket
    assert access.refusal("192.0.2.7", []) == "not_allowed"
    assert access.refusal("::ffff:192.0.2.7", []) == "not_allowed"
    assert access.refusal(None, []) == "not_allowed"  # a Unix socket: unknown peer
    assert access.refusal("not-an-address", []) == "not_allowed"


def test_a_proxied_request_is_not_loopback_even_from_loopback() -> None:
    # A load balancer on this host connects from 127.0.0.1 on behalf of anyone outside.
    access = MetricsAccess(LOOPBACK)
    for header in (b"X-Forwarded-For", b"forwarded", b"x-real-ip"):
        assert access.refusal("127.0.0.1", [(header, b"203.0.113.9")]) == "proxied"


def test_a_token_lets_a_scraper_in_from_anywhere_and_a_wrong_one_never() -> None:
    access = MetricsAccess(LOOPBACK, token="s3cret-token")
    bearer = [(b"authorization", b"Bearer s3cret-token")]
    assert access.refusal("198.51.100.4", bearer) == ""
    assert access.refusal("127.0.0.1", [*bearer, (b"x-forwarded-for", b"203.0.113.9")]) == ""
    assert access.refusal("198.51.100.4", [(b"authorization", b"Bearer wrong")]) == "bad_token"
    assert access.refusal("127.0.0.1", [(b"authorization", b"Bearer wrong")]) == "bad_token"
    assert access.refusal("127.0.0.1", [(b"authorization", b"Basic czNjcmV0")]) == "bad_token"
    # No token configured: a presented one is refused, it cannot match an empty secret.
    assert MetricsAccess(LOOPBACK).refusal("127.0.0.1", bearer) == "bad_token"


def test_networks_are_a_setting_and_a_typo_is_an_error() -> None:
    access = MetricsAccess(parse_networks(["10.20.0.0/16", " ", "192.0.2.9"]))
    assert access.refusal("10.20.3.4", []) == ""
    assert access.refusal("192.0.2.9", []) == ""
    assert access.refusal("127.0.0.1", []) == "not_allowed"  # the allowlist replaces loopback
    with pytest.raises(ValueError, match=r"METRICS_ALLOW_NETWORKS: '10\.0\.0\.300/8'"):
        parse_networks(["10.0.0.300/8"])


async def passthrough(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def endpoint(**kwargs: Any) -> MetricsEndpoint:
    return MetricsEndpoint(
        passthrough, access=kwargs.pop("access", MetricsAccess(LOOPBACK)), **kwargs
    )


async def request(
    app: MetricsEndpoint, path: str, client: str, *, method: str = "GET", headers: Any = ()
) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "client": (client, 50000),
        "headers": list(headers),
    }
    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_the_endpoint_answers_metrics_and_passes_everything_else_on() -> None:
    app = endpoint()
    status, body = asyncio.run(request(app, "/metrics", "127.0.0.1"))
    assert status == 200
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"telephony_calls_active", "telephony_frames", "telephony_stt_write_seconds"} <= names
    assert asyncio.run(request(app, "/admin/", "192.0.2.7"))[0] == 204  # not ours: passed on
    assert asyncio.run(request(app, "/metrics", "127.0.0.1", method="HEAD")) == (200, b"")
    assert asyncio.run(request(app, "/metrics", "127.0.0.1", method="POST"))[0] == 405
    status, body = asyncio.run(request(app, "/metrics", "192.0.2.7"))
    assert (status, body) == (403, b"forbidden: not_allowed (see docs/operations.md, Metrics)\n")


def non_loopback_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


@contextlib.contextmanager
def serving(app: Any, host: str) -> Iterator[int]:
    """Serve `app` with uvicorn on `host` in a thread; yield its port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started
        yield port
    finally:
        server.should_exit = True
        thread.join(5)


def get(host: str, port: int, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", "/metrics", headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_over_the_network_a_non_loopback_client_is_refused_by_default(settings) -> None:
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no address but loopback")
    # The settings' defaults, as a server starts with them.
    assert settings.METRICS_ALLOW_NETWORKS == ["127.0.0.0/8", "::1/128"]
    assert settings.METRICS_BEARER_TOKEN == ""
    app = MetricsEndpoint(passthrough)
    with serving(app, "0.0.0.0") as port:
        status, body = get(address, port)  # the peer address is `address`, not loopback
        assert (status, body) == (
            403,
            b"forbidden: not_allowed (see docs/operations.md, Metrics)\n",
        )
        assert get("127.0.0.1", port, {"X-Forwarded-For": address})[0] == 403
        assert get("127.0.0.1", port)[0] == 200
