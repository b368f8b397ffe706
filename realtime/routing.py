"""WebSocket routes of every dialect and of the local agent."""
from django.urls import path, re_path

from realtime.dialects.conversation import ConversationConsumer
from realtime.dialects.realtime import realtime_application
from realtime.dialects.tasks.consumer import TasksConsumer
from realtime.lib.websocket import unknown_path_application
from realtime.local_agent.routing import websocket_urlpatterns as local_agent_patterns

websocket_urlpatterns = [
    *local_agent_patterns,
    path("api/v1/realtime/session", realtime_application(session_endpoint=True)),
    path("v1/realtime", realtime_application(session_endpoint=False)),
    path("v1/conversation", ConversationConsumer.as_asgi()),
    # Exact matches (path() routes are endpoints), so the tasks dialect never shadows v1/<dialect>.
    path("v1/", TasksConsumer.as_asgi()),
    path("v1", TasksConsumer.as_asgi()),
    # Last: any other path (the root included) is refused with 4404, never an HTTP 500.
    re_path(r"", unknown_path_application),
]
