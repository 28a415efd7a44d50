"""WebSocket routes of the calls app (mounted by project/asgi.py behind session auth)."""

from django.urls import path

from calls.consumers import LiveMetricsConsumer

websocket_urlpatterns = [
    path("ws/admin/metrics/", LiveMetricsConsumer.as_asgi()),
]
