"""ASGI entry point: HTTP to Django, WebSockets to the Twilio stream and the live admin page.

`application` is for daphne (`daphne project.asgi:application`, and `manage.py runserver`);
`asgi_app` is the same app under the name the uvicorn command uses (bin/run). Run one worker per
process: a call's state lives in the process that holds its WebSocket.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_asgi_app = get_asgi_application()  # sets Django up before the routing imports models

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from calls.origins import PublicOriginValidator  # noqa: E402
from calls.routing import websocket_urlpatterns as admin_websockets  # noqa: E402
from telephony.exporter import MetricsEndpoint  # noqa: E402
from telephony.routing import websocket_urlpatterns as twilio_websockets  # noqa: E402
from telephony.security.guard import TwilioWebhookGuard  # noqa: E402
from telephony.shutdown import Lifespan  # noqa: E402
from telephony.warmup import warm_up  # noqa: E402

application = ProtocolTypeRouter(
    {
        # GET /metrics is answered before Django (telephony/exporter.py says who may read it);
        # Twilio's webhooks are refused on the loop unless signed (telephony/security/guard.py).
        "http": MetricsEndpoint(TwilioWebhookGuard(django_asgi_app)),
        # uvicorn: finish the calls in progress at shutdown (daphne: see telephony/shutdown.py)
        "lifespan": Lifespan(),
        "websocket": URLRouter(
            [
                # Twilio is authenticated by its request signature, not by a browser session.
                *twilio_websockets,
                *[
                    type(route)(
                        route.pattern,
                        PublicOriginValidator(AuthMiddlewareStack(route.callback)),
                    )
                    for route in admin_websockets
                ],
            ]
        ),
    }
)
asgi_app = application

warm_up()
