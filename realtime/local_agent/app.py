"""WebSocket endpoint of the local agent: checks the internal secret, then hands frames to a Session.

A plain ASGI application, like the realtime dialect (realtime/dialects/realtime.py): a session's own
traffic needs no channel layer, so a Redis outage leaves live local-agent sessions running.
"""
from __future__ import annotations

import hmac
from urllib.parse import parse_qs

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


async def local_agent_application(scope, receive, send) -> None:
    if scope["type"] != "websocket" or (await receive())["type"] != "websocket.connect":
        return
    presented = presented_secret(scope)
    # Accept first so the refusal carries a close code and reason the caller can read.
    await send({"type": "websocket.accept"})
    if presented is None:
        await send({"type": "websocket.close", "code": CLOSE_MISSING_CREDENTIALS,
                    "reason": "missing credentials: Authorization: Bearer <agent secret>"})
        return
    if not secret_is_valid(presented):
        await send({"type": "websocket.close", "code": CLOSE_FORBIDDEN, "reason": "invalid agent secret"})
        return

    async def send_text(text: str) -> None:
        await send({"type": "websocket.send", "text": text})

    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    session = Session(send=send_text, model=(query.get("model") or [None])[0])
    await session.start()
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message["type"] != "websocket.receive":
                continue
            text = message.get("text")
            if text is None:
                session.error("invalid_event", "Binary frames are not supported; send JSON text events.")
                continue
            await session.handle_text(text)
    finally:
        await session.close()
