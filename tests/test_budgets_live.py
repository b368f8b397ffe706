"""Monthly budgets enforced by real server processes in every dialect: a spent budget refuses new
sessions with ``budget_exceeded`` in the dialect's own shape (close 4402), and a live session that
spends its budget is warned, keeps working through the grace period, then is closed."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import time
from urllib.parse import urlencode

import pytest
import websockets
from asgiref.sync import sync_to_async

from accounts.models import Budget, EnvironmentKind
from accounts.services import api_key_create
from tests.test_billing_support import ledger_row, prices_set
from tests.test_gateway_support import (
    ScriptedUpstream,
    bearer,
    closed,
    connect,
    expect_refusal,
    make_custom_deployment,
    recv_json,
    recv_until,
    session_url,
)
from tests.test_rooms_live import BASE_DIR, SCRIPT, run_plan
from tests.test_tasks_support import b64, expect_closed_with_error, new_connection, png_bytes, run_task, task_uuid
from tests.test_tasks_support import connect as tasks_connect

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

TIMEOUT = 30
GRACE_SECONDS = 1.5
LIVE_ENV = {"REALTIME_METER_FLUSH_SECONDS": "0.3", "BILLING_SPEND_CACHE_SECONDS": "0.3",
            "REALTIME_BUDGET_GRACE_SECONDS": str(GRACE_SECONDS)}


def key_for(project, owner, name: str, kind=EnvironmentKind.DEVELOPMENT):
    return api_key_create(project=project, environment=project.environments.get(kind=kind), name=name, created_by=owner)


def budget(project, key_id: str, limit: int) -> None:
    Budget.objects.update_or_create(project=project, key_id=key_id, defaults={"monthly_limit_micros": limit})


def conversation_url(server, raw: str, deployment_key: str) -> str:
    query = urlencode({"apiKey": raw, "deploymentKey": deployment_key, "channelKey": "web-en-US"})
    return f"{server.ws_url}/v1/conversation?{query}"


def conversation_request(text: str) -> str:
    return json.dumps({"request": {"unstructured": {"text": text}}, "userId": "u1"})


def rooms_connect_error(server, raw: str) -> dict:
    node = shutil.which("node")
    plan = {"scenario": "connect", "clients": [{"name": "r", "url": server.http_url, "apiKey": raw}]}
    result = subprocess.run([node, str(SCRIPT)], cwd=BASE_DIR, env={**os.environ, "ROOMS_PLAN": json.dumps(plan)},
                            capture_output=True, text=True, timeout=60)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines and lines[-1].get("done"), f"{result.stdout}\n{result.stderr}"
    assert lines[-1]["report"]["connected"] == {"r": False}
    return next(line for line in lines if line.get("event") == "connect_error")


async def test_a_spent_budget_refuses_new_sessions_of_every_dialect(server_factory, project, owner):
    spent_row, spent = await sync_to_async(key_for)(project, owner, "spent key")
    _fine_row, fine = await sync_to_async(key_for)(project, owner, "other key")
    await sync_to_async(budget)(project, spent_row.key_id, 1000)
    await sync_to_async(ledger_row)(spent_row, "messages", 10, unit_price=100)  # 1000 of 1000: spent
    async with ScriptedUpstream() as upstream:
        deployment = await make_custom_deployment(project, upstream.url)
        server = server_factory()

        # realtime: an error event, then close 4402.
        async with await connect(session_url(server, "budget-new"), bearer(spent)) as ws:
            error, code = await expect_refusal(ws)
        assert (error["code"], code) == ("budget_exceeded", 4402) and "this API key" in error["message"]
        # tasks: the errors message, then close 4402.
        async with await tasks_connect(server) as ws:
            await ws.send(json.dumps({"newConnection": {"apiKey": spent}}))
            error, code = await expect_closed_with_error(ws)
        assert (error["code"], code) == ("budget_exceeded", 4402)
        # conversation: its error shape, then close 4402.
        async with websockets.connect(conversation_url(server, spent, deployment.deployment_key)) as ws:
            message = await recv_json(ws)
            code = await closed(ws)
        assert (message["error"]["code"], code) == ("budget_exceeded", 4402)
        # rooms: connect_error with data.code.
        refused = await asyncio.to_thread(rooms_connect_error, server, spent)
        assert refused["data"] == {"code": "budget_exceeded"} and "budget" in refused["message"]
        assert upstream.connections == []  # no refused session reached the agent

        # The budget is the key's: another key of the project still connects.
        async with await connect(session_url(server, "budget-other"), bearer(fine)) as ws:
            assert (await recv_json(ws))["type"] == "session.created"

        # A spent project budget refuses every key (a fresh process reads it at once).
        await sync_to_async(budget)(project, "", 1000)
        second = server_factory()
        refused = await asyncio.to_thread(rooms_connect_error, second, fine)
        assert refused["data"] == {"code": "budget_exceeded"} and "this project" in refused["message"]
        async with await connect(session_url(second, "budget-project"), bearer(fine)) as ws:
            error, code = await expect_refusal(ws)
        assert (error["code"], code) == ("budget_exceeded", 4402)


async def test_live_sessions_of_every_dialect_are_warned_then_closed_after_the_grace(server_factory, project, owner):
    await sync_to_async(prices_set)({"audio_in_seconds": 1000, "messages": 1000, "tasks:*": 1000})
    rows = {}
    for name in ("realtime", "conversation", "tasks", "rooms"):
        rows[name] = await sync_to_async(key_for)(project, owner, name)
        await sync_to_async(budget)(project, rows[name][0].key_id, 1500)  # spent by the second unit of usage
    async with ScriptedUpstream() as upstream:
        deployment = await make_custom_deployment(project, upstream.url)
        server = server_factory(env=LIVE_ENV)

        # realtime: 2 s of audio spends 2000 of 1500.
        async with await connect(session_url(server, "budget-live"), bearer(rows["realtime"][1])) as ws:
            await recv_until(ws, "session.created")
            await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                      "audio": base64.b64encode(bytes(96000)).decode()}))
            warning, _ = await recv_until(ws, "error")
            warned = time.monotonic()
            assert warning["error"]["code"] == "budget_exceeded" and "closed in 1.5 seconds" in warning["error"]["message"]
            # Still served during the grace period.
            await ws.send(json.dumps({"type": "response.create"}))
            await recv_until(ws, "response.done")
            final, _ = await recv_until(ws, "error")
            code = await closed(ws)
        assert (final["error"]["code"], code) == ("budget_exceeded", 4402)
        assert time.monotonic() - warned >= GRACE_SECONDS - 0.1

        # conversation: two requests spend 2000 of 1500.
        async with websockets.connect(conversation_url(server, rows["conversation"][1], deployment.deployment_key)) as ws:
            conversation_id = (await recv_json(ws))["conversationId"]
            for text in ("one", "two"):
                await ws.send(conversation_request(text))
            # Both answers and the warning, which may overtake the second answer (it follows a flush).
            received = [await recv_json(ws) for _ in range(3)]
            answers = [m for m in received if "messages" in m]
            [warning] = [m for m in received if "error" in m]
            assert len(answers) == 2
            assert warning == {"error": {"code": "budget_exceeded", "message": warning["error"]["message"]},
                               "conversationId": conversation_id}
            await ws.send(conversation_request("three"))  # answered during the grace period
            assert "messages" in await recv_json(ws)
            final = await recv_json(ws)
            code = await closed(ws)
        assert (final["error"]["code"], code) == ("budget_exceeded", 4402)

        # tasks: two uploads spend 2000 of 1500.
        async with await tasks_connect(server) as ws:
            await new_connection(ws, rows["tasks"][1])
            for _ in range(2):
                await run_task(ws, {"taskType": "imageUpload", "taskUUID": task_uuid(), "image": b64(png_bytes())})
            warning = await recv_json(ws)
            assert warning["errors"][0]["code"] == "budget_exceeded" and "taskUUID" not in warning["errors"][0]
            assert (await run_task(ws, {"taskType": "ping", "taskUUID": task_uuid()}))["pong"] is True
            error, code = await expect_closed_with_error(ws)
        assert (error["code"], code) == ("budget_exceeded", 4402)

        # rooms: two messages spend 2000 of 1500; the client stays until the server disconnects it.
        report = await asyncio.to_thread(run_plan, {"scenario": "send", "count": 2, "linger": True, "clients": [
            {"name": "r", "url": server.http_url, "apiKey": rows["rooms"][1]}]})
        assert report["r"]["received"] == ["m0", "m1"]
        assert [e["code"] for e in report["r"]["errors"]] == ["budget_exceeded", "budget_exceeded"]
        assert "closed in 1.5 seconds" in report["r"]["errors"][0]["message"]
