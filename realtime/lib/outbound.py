"""Every outbound connection Switchboard makes goes through here: the one seam for tests and for
policy (timeouts, size limits, headers). Upstream agents, LLM endpoints and task upstreams all use it."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_FRAME = 16 * 1024 * 1024


async def websocket_connect(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    subprotocols: list[str] | None = None,
    max_size: int = DEFAULT_MAX_FRAME,
    open_timeout: float = CONNECT_TIMEOUT,
) -> ClientConnection:
    """Open a client WebSocket. Raises OSError / websockets exceptions / TimeoutError on failure."""
    return await websockets.connect(
        url,
        additional_headers=headers or {},
        subprotocols=subprotocols,  # type: ignore[arg-type]
        max_size=max_size,
        open_timeout=open_timeout,
        ping_interval=20,
        ping_timeout=20,
        compression=None,  # realtime audio does not compress; deflate costs latency and CPU
    )


def _client(timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT), follow_redirects=False)


async def http_post_json(url: str, *, payload: dict | list, headers: dict[str, str] | None = None, timeout: float = 60.0) -> httpx.Response:
    async with _client(timeout) as client:
        return await client.post(url, json=payload, headers=headers or {})


async def http_post_sse(
    url: str, *, payload: dict, headers: dict[str, str] | None = None, timeout: float = 60.0
) -> AsyncIterator[dict]:
    """POST and yield each ``data:`` JSON object of a server-sent-event stream (chat completions)."""
    async with _client(timeout) as client:
        async with client.stream("POST", url, json=payload, headers=headers or {}) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                yield json.loads(data)
