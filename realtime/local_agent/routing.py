"""Route of the local agent. The openai SDK appends ``/realtime?model=...`` to its websocket base URL,
so ``websocket_base_url=ws://host/agents/local/v1`` reaches this same path."""
from django.urls import path

from realtime.local_agent.app import local_agent_application

websocket_urlpatterns = [
    path("agents/local/v1/realtime", local_agent_application),
]
