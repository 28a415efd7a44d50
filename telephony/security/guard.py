"""Twilio's webhooks at the ASGI edge: refuse what Twilio did not sign, on the event loop.

Django serves every request through its middleware, one of which (WhiteNoise) is synchronous:
each request, refused or not, takes a turn in the one thread Django's sync code runs in under
ASGI. A flood of unsigned webhooks would queue there, ahead of the real calls' webhooks, and
every request held waiting keeps its objects alive, which lengthens the garbage collector's
full passes (they stop every call's threads). This guard reads the body and checks the
signature on the loop (an HMAC over a small form: microseconds), answers a refusal itself, and
hands only signed requests on to Django, which checks them again (`telephony.views`).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

from django.conf import settings
from django.urls import reverse

from telephony.security import signatures
from telephony.security.refusals import RefusalLog

log = logging.getLogger(__name__)

# One refusal log for a webhook refused here or by the views behind Django (signature, fields).
webhook_refusals = RefusalLog(log, "webhook")

FORM = b"application/x-www-form-urlencoded"
MAX_BODY_BYTES = 64 * 1024  # a Twilio webhook's form is a few hundred bytes


async def _answer(send: Any, status: int, text: str, extra: list | None = None) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})


class TwilioWebhookGuard:
    """ASGI middleware: Twilio's webhook paths reach `app` only when signed."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._paths: frozenset[str] | None = None

    def paths(self) -> frozenset[str]:
        """The webhook paths, as the URL configuration names them."""
        if self._paths is None:
            self._paths = frozenset({reverse("telephony:voice"), reverse("telephony:status")})
        return self._paths

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Pass everything through but an unsigned (or non-POST) request to a webhook."""
        if scope["type"] != "http" or scope["path"] not in self.paths():
            return await self.app(scope, receive, send)
        if scope["method"] != "POST":
            return await _answer(send, 405, "POST only", [(b"allow", b"POST")])
        body = await _read_body(receive, MAX_BODY_BYTES)
        client = (scope.get("client") or ("?",))[0]
        if body is None:
            webhook_refusals.refused("body too large", f"{scope['path']} from {client}")
            return await _answer(send, 413, "request body too large")
        headers = dict(scope.get("headers") or ())
        params: dict[str, str] = {}
        if headers.get(b"content-type", b"").split(b";")[0].strip() == FORM:
            try:
                params = _form(body)
            except ValueError:  # more fields than Django itself would take
                webhook_refusals.refused("too many form fields", f"{scope['path']} from {client}")
                return await _answer(send, 400, "too many form fields")
        path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        url = signatures.public_url(settings.PUBLIC_BASE_URL, path + ("?" + query if query else ""))
        signature = headers.get(b"x-twilio-signature", b"").decode("latin-1") or None
        if not signatures.valid_signature(settings.TWILIO_AUTH_TOKEN, url, params, signature):
            webhook_refusals.refused(
                "invalid X-Twilio-Signature" if signature else "missing X-Twilio-Signature",
                f"{scope['path']} from {client}",
            )
            return await _answer(send, 403, "invalid Twilio signature")
        return await self.app(scope, _replay(body, receive), send)


def _form(body: bytes) -> dict[str, str]:
    """The form's fields as Django's `request.POST.get` sees them (the last of a repeated key)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("iso-8859-1")  # as Django does for a misbehaving client
    pairs = parse_qsl(
        text,
        keep_blank_values=True,
        encoding="utf-8",
        errors="replace",
        max_num_fields=settings.DATA_UPLOAD_MAX_NUMBER_FIELDS,
    )
    return dict(pairs)


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The request's body, or None once it is over `limit` bytes (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # the client went away: what came is all there is
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Any:
    """A `receive` that gives the body already read, then what the server sends after it."""
    sent = False

    async def replayed() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
