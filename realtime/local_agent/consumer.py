"""WebSocket adapter of the local agent: checks the internal secret, then hands frames to a Session."""
from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from realtime.local_agent.session import Session

CLOSE_MISSING_CREDENTIALS = 4001
CLOSE_FORBIDDEN = 4003


def presented_secret(scope: dict) -> str | None:
    """The bearer token of the Authorization header, if any."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


def secret_is_valid(presented: str) -> bool:
    return hmac.compare_digest(presented.encode(), settings.LOCAL_AGENT_SECRET.encode())


class LocalAgentConsumer(AsyncWebsocketConsumer):
    session: Session | None = None

    async def connect(self):
        presented = presented_secret(self.scope)
        # Accept first so the refusal carries a close code and reason the caller can read.
        await self.accept()
        if presented is None:
            await self.close(code=CLOSE_MISSING_CREDENTIALS, reason="missing credentials: Authorization: Bearer <agent secret>")
            return
        if not secret_is_valid(presented):
            await self.close(code=CLOSE_FORBIDDEN, reason="invalid agent secret")
            return
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.session = Session(send=self._send_text, model=(query.get("model") or [None])[0])
        await self.session.start()

    async def _send_text(self, text: str) -> None:
        await self.send(text_data=text)

    async def receive(self, text_data=None, bytes_data=None):
        if self.session is None:
            return
        if text_data is None:
            self.session.error("invalid_event", "Binary frames are not supported; send JSON text events.")
            return
        await self.session.handle_text(text_data)

    async def disconnect(self, code):
        if self.session is not None:
            session, self.session = self.session, None
            await session.close()
