"""URL routes: the Twilio webhooks and the admin."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("twilio/", include("telephony.urls")),
    path("admin/", admin.site.urls),
]
