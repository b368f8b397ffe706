"""ASGI application serving only the local agent (``manage.py run_local_agent``)."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django  # noqa: E402

django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from realtime.lib.websocket import unknown_path_application  # noqa: E402
from realtime.local_agent.routing import websocket_urlpatterns  # noqa: E402

# Any other path is refused with 4404 (see realtime/routing.py).
application = ProtocolTypeRouter(
    {"websocket": URLRouter([*websocket_urlpatterns, re_path(r"", unknown_path_application)])})
