"""The admin's own pages: live calls, and a call's recording, captions and transcripts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse

from calls import review, selectors
from calls.byteranges import Unsatisfiable, byte_range
from calls.live import columns
from calls.models import Call, Recording, recordings_storage

LIVE_SOCKET_PATH = "/ws/admin/metrics/"


def live_metrics(request: HttpRequest, *, model_admin: ModelAdmin) -> HttpResponse:
    """Render the live page for staff who may view calls (the admin wrapper checks staff)."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    opts = model_admin.model._meta
    figure_columns = columns()
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Live calls",
        "opts": opts,
        "app_label": opts.app_label,
        "socket_path": LIVE_SOCKET_PATH,
        "columns": figure_columns,
        "figures": [name for name, _ in figure_columns],
        # call, caller and age before the figures, the trend and the last words after them
        "column_count": len(figure_columns) + 5,
    }
    return TemplateResponse(request, "admin/calls/call/live.html", context)


# --- a call's recording and transcript --------------------------------------------------------

RECORDING_PERMISSION = "calls.listen_recording"
CHUNK_BYTES = 64 * 1024


def call_or_404(request: HttpRequest, model_admin: ModelAdmin, object_id: str) -> Call:
    """Return the call if the user may view calls (the admin wrapper checks staff)."""
    call = model_admin.get_object(request, object_id)
    if call is None:
        raise Http404("no such call")
    if not model_admin.has_view_permission(request, call):
        raise PermissionDenied
    return call


async def _stream(file: Any, start: int, length: int) -> AsyncIterator[bytes]:
    """Read `length` bytes from `start`, a chunk at a time, off the event loop."""
    try:
        await asyncio.to_thread(file.seek, start)
        left = length
        while left > 0:
            chunk = await asyncio.to_thread(file.read, min(CHUNK_BYTES, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        await asyncio.to_thread(file.close)


def recording_audio(
    request: HttpRequest, *, model_admin: ModelAdmin, object_id: str, recording_id: int
) -> HttpResponse:
    """Serve a call's recording to those allowed to listen, with Range support for seeking."""
    call = call_or_404(request, model_admin, object_id)
    if not request.user.has_perm(RECORDING_PERMISSION):
        raise PermissionDenied
    recording = get_object_or_404(Recording, pk=recording_id, call=call)
    storage, name = recordings_storage(), recording.file.name
    try:
        size = storage.size(name)
        file = storage.open(name, "rb")
    except (OSError, ValueError) as exc:  # gone from storage (expired, deleted by hand)
        raise Http404("recording file missing") from exc
    try:
        span = byte_range(request.headers.get("Range"), size)
    except Unsatisfiable:
        file.close()
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    start, end = span if span is not None else (0, size - 1)
    length = max(0, end - start + 1)
    response = StreamingHttpResponse(
        _stream(file, start, length),
        status=206 if span is not None else 200,
        content_type=Recording.CONTENT_TYPE,
    )
    response["Content-Length"] = str(length)
    response["Accept-Ranges"] = "bytes"
    if span is not None:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    disposition = "attachment" if request.GET.get("download") else "inline"
    response["Content-Disposition"] = f'{disposition}; filename="{call.call_sid}.wav"'
    response["Cache-Control"] = "private, no-store"  # a recording is personal data
    return response


def _cues(call: Call) -> list[review.Cue]:
    return review.call_cues(
        call, selectors.call_conversation(call=call), selectors.call_events(call=call)
    )


def call_captions(request: HttpRequest, *, model_admin: ModelAdmin, object_id: str) -> HttpResponse:
    """Return WebVTT captions for the call's recording, built from its transcript."""
    call = call_or_404(request, model_admin, object_id)
    response = HttpResponse(review.webvtt(_cues(call)), content_type="text/vtt; charset=utf-8")
    response["Cache-Control"] = "private, no-store"
    return response


def call_transcript(
    request: HttpRequest, *, model_admin: ModelAdmin, object_id: str, fmt: str
) -> HttpResponse:
    """Download the call's transcript, both sides, as plain text or JSON."""
    call = call_or_404(request, model_admin, object_id)
    cues = _cues(call)
    if fmt == "json":
        response: HttpResponse = JsonResponse(
            review.transcript_json(call, cues), json_dumps_params={"ensure_ascii": False}
        )
    else:
        response = HttpResponse(
            review.transcript_text(call, cues), content_type="text/plain; charset=utf-8"
        )
    response["Content-Disposition"] = f'attachment; filename="{call.call_sid}.{fmt}"'
    response["Cache-Control"] = "private, no-store"
    return response
