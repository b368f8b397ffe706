"""The smallest possible tasks-dialect server, the reference for bench/dialects.py: it accepts any
``newConnection``, answers it with a session UUID and answers ``ping`` tasks, parsing and serializing
with orjson like the gateway. No authentication, database, Redis or buffering.

Run: ``python bench/tasks_reference.py --port N``.
"""
from __future__ import annotations

import argparse
import asyncio
import uuid

import orjson
import websockets
from websockets.asyncio.server import serve

# Spawned by bench/dialects.py, not a benchmark itself: bench/run_all.py skips it.
BENCH_HELPER = True


async def handle(ws) -> None:
    try:
        async for message in ws:
            body = orjson.loads(message)
            if isinstance(body, dict) and "newConnection" in body:
                await ws.send(orjson.dumps({"newConnectionSessionUUID": {"connectionSessionUUID": str(uuid.uuid4())}}).decode())
                continue
            for task in body if isinstance(body, list) else [body]:
                await ws.send(orjson.dumps({"data": [{"taskType": task["taskType"], "taskUUID": task["taskUUID"],
                                                      "pong": True}]}).decode())
    except websockets.ConnectionClosed:
        pass


async def main(port: int) -> None:
    async with serve(handle, "127.0.0.1", port, compression=None):
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
