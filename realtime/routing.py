"""WebSocket routes of every dialect and of the local agent. Every dialect is a plain ASGI application
(no Channels consumer: no thread hop per message, no channel layer for a connection's own traffic)."""
from django.urls import path, re_path

from realtime.dialects.conversation import conversation_application
from realtime.dialects.realtime import realtime_application
from realtime.dialects.tasks.connection import tasks_application
from realtime.lib.websocket import unknown_path_application
from realtime.local_agent.routing import websocket_urlpatterns as local_agent_patterns

tasks = tasks_application()

websocket_urlpatterns = [
    *local_agent_patterns,
    path("api/v1/realtime/session", realtime_application(session_endpoint=True)),
    path("v1/realtime", realtime_application(session_endpoint=False)),
    path("v1/conversation", conversation_application()),
    # Exact matches (path() routes are endpoints), so the tasks dialect never shadows v1/<dialect>.
    path("v1/", tasks),
    path("v1", tasks),
    # Last: any other path (the root included) is refused with 4404, never an HTTP 500.
    re_path(r"", unknown_path_application),
]
