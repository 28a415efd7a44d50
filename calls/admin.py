"""Call review in the Django admin: read-only records, with the transcript, events and charts."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.utils.html import format_html
from django.utils.text import smart_split

from calls import review, selectors, views
from calls.charts import call_charts
from calls.models import Call

GO_BADGE = '<span class="go-badge" style="{}">{}</span>'
GO_STYLES = {
    True: ("background:#2f855a;color:#fff", "GO"),
    False: ("background:#c53030;color:#fff", "NO-GO"),
    None: ("background:#e2e8f0;color:#4a5568", "—"),
}
BADGE_CSS = "padding:1px 6px;border-radius:3px;font-weight:bold;font-size:11px;"
# Each search term is an OR over the search fields, and the terms are ANDed: a query of 1,000
# terms went past SQLite's expression depth (a 500). Searching calls never needs more than this.
SEARCH_MAX_TERMS = 8


def bounded_search(search_term: str, max_terms: int = SEARCH_MAX_TERMS) -> str:
    """Return the search with its first `max_terms` terms only (quoted phrases count as one)."""
    terms = list(smart_split(search_term))
    return " ".join(terms[:max_terms]) if len(terms) > max_terms else search_term


def duration_text(call: Call) -> str:
    """Return the call's duration as m:ss (or h:mm:ss)."""
    duration = call.duration
    if duration is None:
        return "—"
    total = int(duration.total_seconds())
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    list_display = (
        "call_sid",
        "created_at",
        "status",
        "duration",
        "from_number",
        "finals",
        "drops",
        "verdict",
        "stt_engine",
    )
    list_filter = ("status", "created_at", "go", "stt_engine")
    search_fields = ("=call_sid", "=stream_sid", "from_number", "to_number", "transcripts__text")
    date_hierarchy = "created_at"
    list_per_page = 50
    fieldsets = (
        (None, {"fields": ("call_sid", "status", "verdict", "why", "end_reason")}),
        ("Parties", {"fields": ("from_number", "to_number", "account_sid")}),
        (
            "Timeline",
            {"fields": ("answered_at", "started_at", "greeting_played_at", "ended_at", "duration")},
        ),
        ("Stream", {"fields": ("stream_sid", "stt_engine", "stt_language", "process")}),
        (
            "Totals",
            {
                "fields": (
                    "frames_in",
                    "frames_out",
                    "rx_drops",
                    "tx_drops",
                    "finals",
                    "bad_input",
                    "shed",
                    "extra",
                )
            },
        ),
    )
    readonly_fields = ("verdict", "why", "duration")

    # Calls are records: nobody adds, edits or deletes them by hand.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Call | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Call | None = None) -> bool:
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Call], search_term: str
    ) -> tuple[QuerySet[Call], bool]:
        """Search with at most SEARCH_MAX_TERMS terms, and say so when more were given."""
        bounded = bounded_search(search_term)
        if bounded != search_term:
            messages.warning(request, f"Only the first {SEARCH_MAX_TERMS} search terms were used.")
        return super().get_search_results(request, queryset, bounded)

    @admin.display(description="duration")
    def duration(self, call: Call) -> str:
        return duration_text(call)

    @admin.display(description="drops (RX/TX)", ordering="rx_drops")
    def drops(self, call: Call) -> str:
        style = "color:#c53030;font-weight:bold" if call.rx_drops or call.tx_drops else ""
        return format_html('<span style="{}">{} / {}</span>', style, call.rx_drops, call.tx_drops)

    @admin.display(description="GO/NO-GO", ordering="go")
    def verdict(self, call: Call) -> str:
        style, label = GO_STYLES[call.go]
        return format_html(GO_BADGE, BADGE_CSS + style, label)

    @admin.display(description="why NO-GO")
    def why(self, call: Call) -> str:
        return "; ".join(call.go_reasons) or "—"

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        own = [
            path("live/", wrap(self.live_view), name="calls_call_live"),
            path(
                "<path:object_id>/recording/<int:recording_id>/",
                wrap(self.recording_view),
                name="calls_call_recording",
            ),
            path(
                "<path:object_id>/captions.vtt",
                wrap(self.captions_view),
                name="calls_call_captions",
            ),
            path(
                "<path:object_id>/transcript.<str:fmt>",
                wrap(self.transcript_view),
                name="calls_call_transcript",
            ),
        ]
        return [*own, *super().get_urls()]

    def recording_view(
        self, request: HttpRequest, object_id: str, recording_id: int
    ) -> HttpResponse:
        """Play or download a recording (its own permission, Range for seeking)."""
        return views.recording_audio(
            request, model_admin=self, object_id=object_id, recording_id=recording_id
        )

    def captions_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The recording's WebVTT captions, from the transcript."""
        return views.call_captions(request, model_admin=self, object_id=object_id)

    def transcript_view(self, request: HttpRequest, object_id: str, fmt: str) -> HttpResponse:
        """The transcript as a download: .txt or .json."""
        if fmt not in ("txt", "json"):
            raise Http404("transcripts are .txt or .json")
        return views.call_transcript(request, model_admin=self, object_id=object_id, fmt=fmt)

    def live_view(self, request: HttpRequest) -> HttpResponse:
        """Show every running call's figures, live."""
        return views.live_metrics(request, model_admin=self)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Show the call with its conversation, events and metric charts."""
        call = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if call is not None:
            samples = selectors.call_samples(call=call)
            conversation = selectors.call_conversation(call=call)
            events = list(selectors.call_events(call=call))
            extra.update(
                conversation=conversation,
                call_events=events,
                charts=call_charts(samples),
                sample_count=len(samples),
                call=call,
                cues=review.call_cues(call, conversation, events),
                recordings=selectors.call_recordings(call=call),
                may_listen=request.user.has_perm(views.RECORDING_PERMISSION),
                captions_lang=(call.stt_language or "").split("-")[0] or "und",
            )
        return super().change_view(request, object_id, form_url, extra_context=extra)
