from django.urls import path

from telephony import views

app_name = "telephony"
urlpatterns = [
    path("voice/", views.voice, name="voice"),
    path("status/", views.stream_status, name="status"),
]
