"""Twilio's HTTP webhooks: the voice webhook answering TwiML, and the stream status callback."""

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

from telephony import security
from telephony.observer import get_line_observer

log = logging.getLogger(__name__)

View = Callable[[HttpRequest], HttpResponse]


def twilio_signed(view: View) -> View:
    """Reject (403) any request whose X-Twilio-Signature does not match our auth token."""

    @wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        url = security.public_url(settings.PUBLIC_BASE_URL, request.get_full_path())
        signature = request.headers.get("X-Twilio-Signature")
        params = {key: request.POST.get(key, "") for key in request.POST}
        if not security.valid_signature(settings.TWILIO_AUTH_TOKEN, url, params, signature):
            log.warning(
                "403 %s: %s X-Twilio-Signature for %s (CallSid=%s)",
                request.path,
                "invalid" if signature else "missing",
                url,
                params.get("CallSid", "-"),
            )
            return HttpResponseForbidden("invalid Twilio signature")
        return view(request)

    return wrapper


def stream_twiml(*, call_sid: str, now: float) -> str:
    """TwiML connecting the call to our media stream, with its signed per-call token."""
    token = security.make_stream_token(
        settings.TWILIO_AUTH_TOKEN, call_sid, now=now, ttl_s=settings.STREAM_TOKEN_TTL_S
    )
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(
        url=security.stream_url(settings.PUBLIC_BASE_URL),
        status_callback=settings.PUBLIC_BASE_URL.rstrip("/") + "/twilio/status/",
    )
    stream.parameter(name="token", value=token)
    response.append(connect)
    return str(response)


@csrf_exempt
@require_POST
@twilio_signed
def voice(request: HttpRequest) -> HttpResponse:
    """Answer an incoming call: record it and connect it to the media stream."""
    call_sid = request.POST.get("CallSid", "")
    if not call_sid:
        return HttpResponse("CallSid is required", status=400)
    get_line_observer().call_answered(
        call_sid=call_sid,
        account_sid=request.POST.get("AccountSid", ""),
        from_number=request.POST.get("From", ""),
        to_number=request.POST.get("To", ""),
    )
    log.info("call %s answered (from %s)", call_sid, request.POST.get("From", "-"))
    return HttpResponse(stream_twiml(call_sid=call_sid, now=time.time()), content_type="text/xml")


@csrf_exempt
@require_POST
@twilio_signed
def stream_status(request: HttpRequest) -> HttpResponse:
    """Record a stream status callback (stream-started / stream-stopped / stream-error)."""
    call_sid = request.POST.get("CallSid", "")
    event = request.POST.get("StreamEvent", "")
    detail = request.POST.get("StreamError", "") or request.POST.get("StreamSid", "")
    log.info("stream status %s for %s %s", event or "?", call_sid or "?", detail)
    if call_sid:
        get_line_observer().stream_status(call_sid=call_sid, event=event, detail=detail)
    return HttpResponse(status=204)
