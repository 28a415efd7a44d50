"""The webhook guard: unsigned requests never reach Django; signed ones reach it intact."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from channels.testing import HttpCommunicator
from twilio.request_validator import RequestValidator

from telephony.security.guard import MAX_BODY_BYTES, TwilioWebhookGuard

BASE = "https://line.example.com"
KEY = "guard-key"
FORM = {"CallSid": "CA" + "1" * 32, "From": "+972501234567", "Caller": "אבי כהן"}


@pytest.fixture(autouse=True)
def line(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = BASE
    settings.TWILIO_AUTH_TOKEN = KEY


class Inner:
    """The app behind the guard (Django, in production): records what reached it."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, bytes]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.requests.append((scope["path"], body))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"inner"})


async def post(app: Any, path: str, body: bytes, signature: str | None) -> dict[str, Any]:
    headers = [(b"content-type", b"application/x-www-form-urlencoded")]
    if signature is not None:
        headers.append((b"x-twilio-signature", signature.encode()))
    return await HttpCommunicator(app, "POST", path, body=body, headers=headers).get_response()


def sign(path: str, form: dict[str, str]) -> str:
    return RequestValidator(KEY).compute_signature(BASE + path, form)


@pytest.mark.parametrize("path", ["/twilio/voice/", "/twilio/status/"])
async def test_only_signed_webhooks_reach_the_app(path: str) -> None:
    inner = Inner()
    app = TwilioWebhookGuard(inner)
    body = urlencode(FORM).encode()
    refused = {
        "unsigned": None,
        "garbage": "not-a-signature",
        "other fields": sign(path, {**FORM, "From": "+1555"}),
        "other path": sign("/twilio/elsewhere/", FORM),
    }
    for why, signature in refused.items():
        response = await post(app, path, body, signature)
        assert response["status"] == 403, why
    get = await HttpCommunicator(app, "GET", path).get_response()
    assert get["status"] == 405
    big = await post(app, path, b"x=" + b"y" * MAX_BODY_BYTES, sign(path, FORM))
    assert big["status"] == 413
    assert inner.requests == []  # none of it reached Django

    response = await post(app, path, body, sign(path, FORM))
    assert (response["status"], response["body"]) == (200, b"inner")
    assert inner.requests == [(path, body)]  # the body, read by the guard, handed on whole


async def test_other_paths_pass_through_untouched() -> None:
    inner = Inner()
    app = TwilioWebhookGuard(inner)
    response = await HttpCommunicator(app, "POST", "/admin/login/", body=b"a=1").get_response()
    assert response["status"] == 200
    assert inner.requests == [("/admin/login/", b"a=1")]
