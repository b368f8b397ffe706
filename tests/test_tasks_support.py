"""Shared pieces of the tasks dialect's live tests (no tests here): a raw seed-001 client and a task
upstream (a real WebSocket server on loopback) whose answers the test releases one by one."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import uuid
from urllib.parse import parse_qs, urlencode, urlsplit

import websockets
from PIL import Image
from websockets.asyncio.server import serve

TIMEOUT = 30


async def connect(server):
    return await websockets.connect(f"{server.ws_url}/v1/", open_timeout=TIMEOUT, max_size=None, compression=None)


async def recv_json(ws, timeout: float = TIMEOUT):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def new_connection(ws, api_key: str, session_uuid: str | None = None) -> dict:
    request = {"apiKey": api_key}
    if session_uuid is not None:
        request["connectionSessionUUID"] = session_uuid
    await ws.send(json.dumps({"newConnection": request}))
    return await recv_json(ws)


async def expect_closed_with_error(ws) -> tuple[dict, int]:
    """The error message before the close, and the close code."""
    message = await recv_json(ws)
    assert "errors" in message, message
    async with asyncio.timeout(TIMEOUT):
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed:
            pass
    return message["errors"][0], ws.close_code


def prompt_of(result: dict) -> str:
    """The prompt TaskUpstream put into a result's imageURL (the result has no undocumented field)."""
    assert "internal" not in result, result
    return parse_qs(urlsplit(result["imageURL"]).query)["prompt"][0]


def task_uuid() -> str:
    return str(uuid.uuid4())


async def run_task(ws, task: dict) -> dict:
    """Send one task and return the response carrying its taskUUID (data item or error)."""
    await ws.send(json.dumps(task))
    async with asyncio.timeout(TIMEOUT):
        while True:
            message = await recv_json(ws)
            for item in message.get("data", []) + message.get("errors", []):
                if item.get("taskUUID") == task["taskUUID"]:
                    return item


def png_bytes(width: int = 40, height: int = 30) -> bytes:
    img = Image.new("RGB", (width, height))
    img.putdata([((x * 7) % 256, (y * 11) % 256, (x * y) % 256) for y in range(height) for x in range(width)])
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class TaskUpstream:
    """A model-backed task service over WebSocket: records each task and answers when released."""

    def __init__(self):
        self.arrived: asyncio.Queue[dict] = asyncio.Queue()
        self._release: dict[str, asyncio.Future] = {}
        self._server = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/tasks"

    async def __aenter__(self):
        self._server = await serve(self._handle, "127.0.0.1", 0, compression=None)
        return self

    async def __aexit__(self, *exc):
        self._server.close()
        await self._server.wait_closed()

    def _gate(self, uuid_: str) -> asyncio.Future:
        return self._release.setdefault(uuid_, asyncio.get_running_loop().create_future())

    def release(self, uuid_: str) -> None:
        self._gate(uuid_).set_result(None)

    async def next_task(self) -> dict:
        return await asyncio.wait_for(self.arrived.get(), TIMEOUT)

    async def _handle(self, ws):
        try:
            (task,) = json.loads(await ws.recv())
            self.arrived.put_nowait(task)
            await self._gate(task["taskUUID"])
            await ws.send(json.dumps({"data": [{
                "taskType": task["taskType"], "taskUUID": task["taskUUID"],
                # The prompt comes back in a documented field; an undocumented one is dropped by the gateway.
                "imageURL": f"https://images.example/{task['taskUUID']}.png?" + urlencode({"prompt": task.get("positivePrompt")}),
                "internal": "an upstream's own data",
            }]}))
            await ws.wait_closed()
        except websockets.ConnectionClosed:
            pass
