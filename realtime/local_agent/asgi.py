"""ASGI application serving only the local agent (``manage.py run_local_agent``)."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django  # noqa: E402

django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from realtime.local_agent.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter({"websocket": URLRouter(websocket_urlpatterns)})
