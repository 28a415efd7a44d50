"""Twilio's HTTP webhooks: the voice webhook answering TwiML, and the stream status callback.

Each request is refused before anything else unless Twilio signed it (403), then refused if a
field breaks `telephony.security.fields` (400, with the reason). A signature has no nonce, so a
captured webhook can be replayed: the voice webhook of a call that has ended is answered
`<Hangup/>`, without a token and without touching the call's record; a status callback for a
call the line never answered is refused (404) rather than recorded. Refusals are logged at a
bounded rate (`telephony.security.refusals`). In front of Django, `telephony.security.guard`
refuses unsigned requests on the event loop already; the check here keeps the views safe
wherever they are served from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.twiml.voice_response import Connect, VoiceResponse

from telephony.observer import get_line_observer
from telephony.security import fields, signatures, tokens
from telephony.security.guard import webhook_refusals

log = logging.getLogger(__name__)

View = Callable[[HttpRequest], HttpResponse]

# Webhooks refused (unsigned, bad fields, an ended or unknown call): whoever floods them must not
# flood the log as well.


def client_of(request: HttpRequest) -> str:
    """Who sent the request, for a log line."""
    return request.META.get("REMOTE_ADDR") or "?"


def twilio_signed(view: View) -> View:
    """Reject (403) any request whose X-Twilio-Signature does not match our auth token."""

    @wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        url = signatures.public_url(settings.PUBLIC_BASE_URL, request.get_full_path())
        signature = request.headers.get("X-Twilio-Signature")
        params = {key: request.POST.get(key, "") for key in request.POST}
        if not signatures.valid_signature(settings.TWILIO_AUTH_TOKEN, url, params, signature):
            webhook_refusals.refused(
                "invalid X-Twilio-Signature" if signature else "missing X-Twilio-Signature",
                f"{request.path} from {client_of(request)}",
            )
            return HttpResponseForbidden("invalid Twilio signature")
        return view(request)

    return wrapper


def refuse(request: HttpRequest, status: int, why: str, about: str = "") -> HttpResponse:
    """Answer `status` with the reason, logged at a bounded rate."""
    webhook_refusals.refused(why, f"{request.path} from {client_of(request)} {about}".rstrip())
    return HttpResponse(why, status=status, content_type="text/plain")


def stream_twiml(*, call_sid: str, now: float) -> str:
    """TwiML connecting the call to our media stream, with its signed per-call token."""
    token = tokens.make_stream_token(
        settings.TWILIO_AUTH_TOKEN, call_sid, now=now, ttl_s=settings.STREAM_TOKEN_TTL_S
    )
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(
        url=signatures.stream_url(settings.PUBLIC_BASE_URL),
        status_callback=settings.PUBLIC_BASE_URL.rstrip("/") + "/twilio/status/",
    )
    stream.parameter(name="token", value=token)
    response.append(connect)
    return str(response)


def hangup_twiml() -> str:
    """TwiML that ends the call, and carries no stream token."""
    response = VoiceResponse()
    response.hangup()
    return str(response)


@csrf_exempt
@require_POST
@twilio_signed
def voice(request: HttpRequest) -> HttpResponse:
    """Answer an incoming call: record it and connect it to the media stream."""
    call = fields.read_voice(request.POST)
    if isinstance(call, str):
        return refuse(request, 400, call)
    answered = get_line_observer().call_answered(
        call_sid=call.call_sid,
        account_sid=call.account_sid,
        from_number=call.from_number,
        to_number=call.to_number,
    )
    if not answered:
        # A replay of an ended call's webhook (Twilio asks once per call): no token, and the
        # call's record as it was. <Hangup/> is valid TwiML, should Twilio itself ever ask again.
        webhook_refusals.refused(
            "the call has ended", f"voice webhook for {call.call_sid}: <Hangup/>"
        )
        return HttpResponse(hangup_twiml(), content_type="text/xml")
    log.info("call %s answered (from %s)", call.call_sid, call.from_number or "-")
    return HttpResponse(
        stream_twiml(call_sid=call.call_sid, now=time.time()), content_type="text/xml"
    )


@csrf_exempt
@require_POST
@twilio_signed
def stream_status(request: HttpRequest) -> HttpResponse:
    """Record a stream status callback (stream-started / stream-stopped / stream-error)."""
    status = fields.read_stream_status(request.POST)
    if isinstance(status, str):
        return refuse(request, 400, status)
    log.info("stream status %s for %s %s", status.event or "?", status.call_sid, status.detail)
    known = get_line_observer().stream_status(
        call_sid=status.call_sid, event=status.event, detail=status.detail
    )
    if not known:
        return refuse(request, 404, "unknown CallSid", status.call_sid)
    return HttpResponse(status=204)
