"""The admin's live page of running calls (its figures arrive over /ws/admin/metrics/)."""

from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from calls.live import columns

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
        # call, caller and age before the figures, the trend after them
        "column_count": len(figure_columns) + 4,
    }
    return TemplateResponse(request, "admin/calls/call/live.html", context)
