"""A bare ASGI application answering the tasks dialect's ``ping`` like bench/tasks_reference.py, for
bench/dialects.py to serve under daphne: the server's own cost per message, without the gateway (the
*daphne-floor* row). Any ``newConnection`` is accepted; nothing is authenticated, stored or confirmed.

Run: ``python -m daphne -b 127.0.0.1 -p N bench.tasks_asgi_reference:application`` (from the repository root).
"""
from __future__ import annotations

import uuid

import orjson

# Spawned by bench/dialects.py, not a benchmark itself: bench/run_all.py skips it.
BENCH_HELPER = True


async def application(scope, receive, send) -> None:
    if scope["type"] != "websocket" or (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        body = orjson.loads(message.get("text") or "null")
        if isinstance(body, dict) and "newConnection" in body:
            answer = {"newConnectionSessionUUID": {"connectionSessionUUID": str(uuid.uuid4())}}
            await send({"type": "websocket.send", "text": orjson.dumps(answer).decode()})
            continue
        for task in body if isinstance(body, list) else [body]:
            answer = {"data": [{"taskType": task["taskType"], "taskUUID": task["taskUUID"], "pong": True}]}
            await send({"type": "websocket.send", "text": orjson.dumps(answer).decode()})
