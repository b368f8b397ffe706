"""The answer to a WebSocket upgrade on a path no endpoint serves."""
from __future__ import annotations

import json

CLOSE_NOT_FOUND = 4404  # the gateway's code for "no such thing" (realtime/gateway/limits.py)

UNKNOWN_PATH_ERROR = json.dumps({"type": "error", "error": {
    "type": "invalid_request_error", "code": "unknown_path",
    "message": "No WebSocket endpoint at this path; the dialects' paths are listed in docs/dialects.md."}})


async def unknown_path_application(scope, receive, send) -> None:
    """Accept, send an ``error`` event, close with 4404: a clean refusal the client can read, where an
    unmatched route would otherwise raise (HTTP 500 and a traceback in the log). The reason travels
    in the event as well because daphne drops close reasons."""
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": UNKNOWN_PATH_ERROR})
    await send({"type": "websocket.close", "code": CLOSE_NOT_FOUND, "reason": "unknown_path"})
