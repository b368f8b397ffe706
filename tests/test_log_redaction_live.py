"""No key, token or upstream credential in any log line: a full session of each kind on uvicorn and on
daphne at LOG_LEVEL=DEBUG (uvicorn's own handshake and access lines, daphne's access log, Django's
and the WebSocket client's DEBUG handshake lines included), with the secrets everywhere a client or
an agent puts them: `?apiKey=`, `?token=`, `Authorization`, the first tasks message, and an upstream
credential sent in a custom header."""
from __future__ import annotations

import json
import sys

import pytest
from asgiref.sync import sync_to_async

from realtime.gateway.tokens import token_mint
from tests.test_conversation_live import connect as conversation_connect
from tests.test_conversation_live import deployment_key, request
from tests.test_conversation_live import recv_json as conversation_recv
from tests.test_gateway_support import (
    ScriptedUpstream,
    bearer,
    connect,
    make_custom_deployment,
    recv_json,
    recv_until,
    session_url,
)
from tests.test_tasks_support import connect as tasks_connect
from tests.test_tasks_support import new_connection, run_task, task_uuid

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

CREDENTIAL = "upstream-credential-7f3a9c2e"
UVICORN = [sys.executable, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1", "--port", "{port}",
           "--lifespan", "off", "--ws", "realtime.lib.frames:ServerWebSocketProtocol", "--log-level", "debug"]


async def full_sessions(server, project, row, raw) -> list[str]:
    """Run a session of each dialect; the secrets it used."""
    token = await sync_to_async(lambda: token_mint(api_key_pk=str(row.pk))[0])()
    # realtime, with a JWT in ?token= and a key in Authorization, relayed to an upstream that takes
    # its credential in a custom header
    async with await connect(session_url(server, f"logs-jwt-{server.port}", token=token)) as ws:
        assert (await recv_json(ws))["type"] == "session.created"
        await ws.send(json.dumps({"type": "response.create"}))
        await recv_until(ws, "response.done")
    async with await connect(session_url(server, f"logs-key-{server.port}"), bearer(raw)) as ws:
        assert (await recv_json(ws))["type"] == "session.created"
    # a refused token is logged as a refusal, not as the token
    async with await connect(session_url(server, f"logs-bad-{server.port}", token=token[:-4] + "AAAA")) as ws:
        assert (await recv_json(ws))["type"] == "error"
    # conversation, with the key in ?apiKey=
    async with await conversation_connect(server, deploymentKey=await deployment_key(project),
                                          channelKey="web-en-US", apiKey=raw) as ws:
        await conversation_recv(ws)
        await ws.send(request("hello"))
        await conversation_recv(ws)
    # tasks, with the key in the first message
    async with await tasks_connect(server) as ws:
        await new_connection(ws, raw)
        assert (await run_task(ws, {"taskType": "ping", "taskUUID": task_uuid()}))["pong"] is True
    return [raw, token, token.split(".")[1], token.split(".")[2], CREDENTIAL]


@pytest.mark.parametrize("argv", [None, UVICORN], ids=["daphne", "uvicorn"])
async def test_a_debug_log_of_every_dialect_holds_no_secret(server_factory, project, dev_key, argv):
    row, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url, credential=CREDENTIAL,
                                     header_template={"X-Upstream-Key": "{credential}"})
        server = server_factory(env={"LOG_LEVEL": "DEBUG"}, argv=argv)
        secrets = await full_sessions(server, project, row, raw)
        assert upstream.connections[0].headers["X-Upstream-Key"] == CREDENTIAL  # it was sent
    server.stop()
    log = server.log()
    (server.log_path.parent.parent / f"redaction-{'uvicorn' if argv else 'daphne'}.log").write_text(log)
    # The log is a real one: it shows the sessions (handshake lines with their redacted parameters).
    assert "/api/v1/realtime/session" in log and "/v1/conversation" in log
    assert "> X-Upstream-Key: [REDACTED]" in log  # the upstream handshake, logged at DEBUG
    if argv == UVICORN:  # daphne's access lines carry no query string at all
        assert "apiKey=[REDACTED]" in log and "token=[REDACTED]" in log
    for secret in secrets:
        assert secret not in log
    assert raw[-12:] not in log
