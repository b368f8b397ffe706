"""Socket.IO affinity behind a balancer.

Engine.IO's HTTP long-polling transport spreads one client session over many requests, and every one
must reach the process holding the session. Cookies would do it, but not every client keeps them
(seed 003's Node client does not). Instead the response that opens an Engine.IO session names it in an
``X-Engineio-Sid`` header; a balancer remembers which server sent that value and routes every request
carrying ``?sid=<it>`` (polling, and the WebSocket upgrade) to that server (deploy/haproxy.cfg:
``stick store-response res.hdr(x-engineio-sid)`` / ``stick match urlp(sid)``).
"""
from __future__ import annotations

from urllib.parse import parse_qs

import orjson

HEADER = b"x-engineio-sid"


def _opening(scope) -> bool:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return scope.get("method") == "GET" and "sid" not in query and query.get("transport") == ["polling"]


def _sid_of(body: bytes) -> str | None:
    # The open packet: "0" then a JSON object with "sid" (more packets may follow after \x1e).
    if not body.startswith(b"0{"):
        return None
    try:
        sid = orjson.loads(body[1:].split(b"\x1e", 1)[0]).get("sid")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return sid if isinstance(sid, str) else None


def engineio_sid_header(scope, send):
    """``send`` for an Engine.IO request: the opening response gains the session-id header."""
    if not _opening(scope):
        return send
    held: dict = {}

    async def wrapped(message):
        if message["type"] == "http.response.start" and not held:
            held["start"] = message
            return
        if message["type"] == "http.response.body" and "start" in held:
            start = held.pop("start")
            sid = _sid_of(message.get("body", b""))
            if sid is not None:
                start = {**start, "headers": [*start.get("headers", []), (HEADER, sid.encode())]}
            held["sent"] = True
            await send(start)
        await send(message)

    return wrapped
