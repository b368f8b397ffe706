"""Large frames on `make run`'s server (uvicorn with the Makefile's SERVER_ARGS) and on daphne as
README.md documents it: 2 MB and 8 MB frames get a coded answer (accepted by the tasks dialect up to
TASKS_MAX_FRAME_BYTES, `frame_too_large` beyond; `frame_too_large` from the realtime dialect over
REALTIME_MAX_FRAME_BYTES) and the session goes on; a 3 MB task result reaches the client; beyond the
16 MiB limit of `make run`'s server the connection ends with a proper close frame (1009)."""
from __future__ import annotations

import json
import re
import shlex
import sys

import pytest
import websockets

from tests.conftest import BASE_DIR
from tests.test_gateway_support import ScriptedUpstream, bearer, connect, make_custom_deployment, recv_json, session_url
from tests.test_tasks_support import connect as tasks_connect
from tests.test_tasks_support import new_connection, run_task, task_uuid

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def make_run_argv() -> list[str]:
    """The server command of `make run`, from the Makefile itself."""
    makefile = (BASE_DIR / "Makefile").read_text()
    args = re.search(r"^SERVER_ARGS := (.+)$", makefile, re.MULTILINE).group(1)
    assert "$(VENV)/bin/uvicorn project.asgi:application --host $(HOST) --port $(PORT) $(SERVER_ARGS)" in makefile
    return [sys.executable, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1", "--port", "{port}",
            *shlex.split(args)]


SERVERS = pytest.mark.parametrize("argv", [make_run_argv(), None], ids=["make-run-uvicorn", "daphne"])
MB = 1_000_000


def item(text: str) -> str:
    return json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})


@SERVERS
async def test_tasks_take_8_mb_frames_answer_larger_ones_and_return_big_results(server_factory, dev_key, argv):
    _, raw = dev_key
    server = server_factory(argv=argv)
    async with await tasks_connect(server) as ws:
        await new_connection(ws, raw)
        for size in (2 * MB, 8 * MB):
            answer = await run_task(ws, {"taskType": "ping", "taskUUID": task_uuid(), "pad": "x" * size})
            assert answer.get("pong") is True, answer
        await ws.send(json.dumps({"taskType": "ping", "taskUUID": task_uuid(), "pad": "x" * (9 * MB)}))
        refused = (await recv_json(ws))["errors"][0]
        assert refused["code"] == "frame_too_large"
        # A text2speech of 960 characters is a result of over 3 MB.
        spoken = await run_task(ws, {"taskType": "text2speech", "taskUUID": task_uuid(), "text": "hello world " * 80})
        assert len(spoken["audioBase64Data"]) > 2 * MB
        assert (await run_task(ws, {"taskType": "ping", "taskUUID": task_uuid()}))["pong"] is True


@SERVERS
async def test_realtime_answers_2_and_8_mb_frames_with_frame_too_large_and_goes_on(
        server_factory, project, dev_key, argv):
    _, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory(argv=argv)
        async with await connect(session_url(server, f"big-{server.port}"), bearer(raw), max_size=None) as ws:
            assert (await recv_json(ws))["type"] == "session.created"
            for size in (2 * MB, 8 * MB):
                await ws.send(item("x" * size))
                event = await recv_json(ws)
                assert (event["type"], event["error"]["code"]) == ("error", "frame_too_large")
            await ws.send(item("after"))
            assert (await recv_json(ws))["type"] == "conversation.item.added"


async def test_beyond_make_runs_limit_the_close_is_a_proper_1009(server_factory, dev_key):
    """(daphne closes too, but resets the socket while the client still sends: no close frame arrives.)"""
    _, raw = dev_key
    server = server_factory(argv=make_run_argv())
    async with await tasks_connect(server) as ws:
        await new_connection(ws, raw)
        with pytest.raises(websockets.ConnectionClosed):
            await ws.send(json.dumps({"taskType": "ping", "taskUUID": task_uuid(), "pad": "x" * (17 * MB)}))
            await recv_json(ws)
    assert ws.close_code == 1009
