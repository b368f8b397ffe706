"""A WebSocket upgrade to a path no endpoint serves (seed 002's root path, a typo, a made-up path) is
refused cleanly on daphne and on uvicorn: accepted, then closed with 4404 and a reason the client can
read; never an HTTP 500, never a traceback in the server log. Unknown HTTP paths stay a plain 404."""
from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

import pytest
import websockets

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

UVICORN = [sys.executable, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1", "--port", "{port}",
           "--loop", "uvloop", "--http", "httptools", "--ws", "realtime.lib.frames:ServerWebSocketProtocol", "--ws-per-message-deflate", "false",
           "--lifespan", "off", "--no-access-log"]  # the production command (README.md)
PATHS = ["/", "/?deploymentKey=d&channelKey=c&apiKey=k", "/v1/realtimee", "/api/v1/realtime", "/no/such/path",
         "/agents/local/v2/realtime"]


async def refusal(url: str) -> tuple[dict, int]:
    async with websockets.connect(url, open_timeout=10, close_timeout=5) as ws:
        event = json.loads(await ws.recv())
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        return event, ws.close_code


LOCAL_AGENT = [sys.executable, "manage.py", "run_local_agent", "--port", "{port}"]  # the agent on its own


@pytest.mark.parametrize("server_kind", ["daphne", "uvicorn", "local_agent"])
async def test_unknown_websocket_paths_are_refused_cleanly(server_factory, server_kind):
    server = server_factory(argv={"daphne": None, "uvicorn": UVICORN, "local_agent": LOCAL_AGENT}[server_kind])

    for path in PATHS:
        event, code = await refusal(server.ws_url + path)
        assert event["type"] == "error" and event["error"]["code"] == "unknown_path", (path, event)
        assert code == 4404, (path, code)

    if server_kind != "local_agent":  # (which serves no HTTP)
        with pytest.raises(urllib.error.HTTPError) as not_found:
            urllib.request.urlopen(server.http_url + "/no/such/page", timeout=10)
        assert not_found.value.code == 404
    log = server.log()
    assert "Traceback" not in log and " 500 " not in log, log[-3000:]
