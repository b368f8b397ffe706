"""The local agent carries its sessions without the channel layer (issue 11 item 1): a Redis outage
in the middle of a session changes nothing for it. The server (project.asgi, where the gateway finds
the local agent by default) uses a redis-server of the test's own, stopped between two turns."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import websockets

from tests.conftest import free_port, wait_for_port
from tests.test_local_agent_live import PATH, SECRET, AgentClient

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


async def text_turn(client: AgentClient, text: str) -> str:
    await client.send("conversation.item.create", item={"type": "message", "role": "user",
                                                        "content": [{"type": "input_text", "text": text}]})
    await client.send("response.create", response={"output_modalities": ["text"]})
    events = await client.until("response.done")
    assert events[-1]["response"]["status"] == "completed", events[-1]
    return next(e for e in events if e["type"] == "response.output_text.done")["text"]


async def test_a_local_agent_session_outlives_a_redis_outage(server_factory):
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        log_path = Path(workdir) / "redis.log"
        with open(log_path, "wb") as log:
            redis = subprocess.Popen([redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", workdir], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, redis, log_path)
            server = server_factory(env={"LOCAL_AGENT_SECRET": SECRET, "REDIS_URL": f"redis://127.0.0.1:{port}/0"})
            ws = await websockets.connect(server.ws_url + PATH, additional_headers={"Authorization": f"Bearer {SECRET}"})
            client = AgentClient(ws)
            assert (await client.next())["type"] == "session.created"
            assert "first turn" in await text_turn(client, "This is the first turn.")

            redis.kill()
            redis.wait(timeout=10)

            assert "second turn" in await text_turn(client, "This is the second turn.")
            await ws.close()
            assert ws.close_code == 1000
        finally:
            if redis.poll() is None:
                redis.kill()
                redis.wait(timeout=10)
