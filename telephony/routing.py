from django.urls import path

from telephony.consumers import TwilioStreamConsumer

websocket_urlpatterns = [
    path("twilio/stream/", TwilioStreamConsumer.as_asgi()),
]
