"""One ASGI application: Django HTTP, the WebSocket dialects, and Socket.IO (the rooms dialect) at /socket.io/."""
import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from accounts.billing.writer import usage_spool_keeper_start  # noqa: E402

usage_spool_keeper_start()  # usage a previous life of this process (or a dead peer) spooled gets written

import socketio  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from project.health import operations_application  # noqa: E402
from realtime.dialects.rooms import sio  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402

# /socket.io/ (HTTP long-polling and WebSocket) goes to the rooms dialect; everything else to Django/Channels.
application = socketio.ASGIApp(
    sio,
    other_asgi_app=ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": URLRouter(websocket_urlpatterns),
        }
    ),
    socketio_path="socket.io",
)
# /healthz, /readyz, /metrics; the process monitor and the SIGTERM drain (project/health.py).
application = operations_application(application)

# What is loaded by now (modules, settings, URL tables, the apps) lives as long as the process. Frozen,
# it is left out of every garbage collection: a full collection walked about 150,000 such objects,
# 65 ms with the event loop stopped, which was the tail of a connect storm (issue 14).
gc.collect()
gc.freeze()
