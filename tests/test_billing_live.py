"""Billing end to end: sessions of all four dialects with known audio, text, messages and tasks through
a real server process, and the ledger's exact totals per key and metric, each row at its price and
each session charged its exact cost rounded down to the micro-unit."""
from __future__ import annotations

import asyncio
import base64
import json
from decimal import ROUND_FLOOR, Decimal
from urllib.parse import urlencode

import pytest
import websockets
from asgiref.sync import sync_to_async

from accounts.models import EnvironmentKind, MonthlySpend, UsageRecord
from accounts.services import api_key_create
from realtime.models import SessionRecord
from tests.test_billing_support import prices_set
from tests.test_gateway_support import (
    ScriptedUpstream,
    bearer,
    connect,
    make_custom_deployment,
    recv_until,
    session_url,
    until,
)
from tests.test_rooms_live import run_plan
from tests.test_tasks_support import b64, new_connection, png_bytes, run_task, task_uuid
from tests.test_tasks_support import connect as tasks_connect

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

# Odd prices, so that a wrong quantity or a rounding slip changes the cost.
DEFAULT_PRICES = {"session_seconds": 37, "audio_in_seconds": 1001, "audio_out_seconds": 3999, "text_in_tokens": 5,
                  "text_out_tokens": 21, "messages": 107, "tasks:*": 1500, "tasks:upscale": 2500}
PROJECT_PRICES = {"messages": 90}  # the project's override


def key_for(project, owner, kind: str, name: str):
    return api_key_create(project=project, environment=project.environments.get(kind=kind), name=name, created_by=owner)


def ledger_by_key_and_metric(project) -> dict[tuple[str, str], dict]:
    totals: dict[tuple[str, str], dict] = {}
    for row in UsageRecord.objects.filter(project=project):
        entry = totals.setdefault((row.key_id, row.metric), {"quantity": Decimal(0), "cost": 0, "prices": set(),
                                                             "sessions": set()})
        entry["quantity"] += row.quantity
        entry["cost"] += row.cost_micros
        entry["prices"].add(row.unit_price_micros)
        entry["sessions"].add(row.session_id)
    return totals


async def realtime_session(server, raw: str) -> None:
    """1 s of PCM16 24 kHz and 0.5 s of G.711 in; two responses of 0.1 s audio and 11/7 tokens each."""
    async with await connect(session_url(server, "billing"), bearer(raw)) as ws:
        await recv_until(ws, "session.created")
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(48000)).decode()}))
        await ws.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}}}}}))
        await recv_until(ws, "session.updated")
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(4000)).decode()}))
        for _ in range(2):
            await ws.send(json.dumps({"type": "response.create"}))
            await recv_until(ws, "response.done")
        await asyncio.sleep(1.2)  # long enough for more than one periodic flush (REALTIME_METER_FLUSH_SECONDS=0.5)


async def conversation_session(server, raw: str, deployment_key: str) -> None:
    """Three ConversationRequests, each answered by the scripted agent (11/7 tokens, 0.1 s audio)."""
    query = urlencode({"apiKey": raw, "deploymentKey": deployment_key, "channelKey": "web-en-US"})
    async with websockets.connect(f"{server.ws_url}/v1/conversation?{query}", open_timeout=15) as ws:
        json.loads(await ws.recv())  # conversationId
        for text in ("one", "two", "three"):
            await ws.send(json.dumps({"request": {"unstructured": {"text": text}}, "userId": "u1"}))
            answer = json.loads(await asyncio.wait_for(ws.recv(), 15))
            assert answer["messages"][0]["text"] == "Hello", answer


async def tasks_session(server, raw: str) -> None:
    """Two imageUploads, one upscale and a ping (not billed)."""
    async with await tasks_connect(server) as ws:
        await new_connection(ws, raw)
        first = await run_task(ws, {"taskType": "imageUpload", "taskUUID": task_uuid(), "image": b64(png_bytes())})
        await run_task(ws, {"taskType": "imageUpload", "taskUUID": task_uuid(), "image": b64(png_bytes(20, 10))})
        upscaled = await run_task(ws, {"taskType": "upscale", "taskUUID": task_uuid(),
                                       "inputImage": first["imageUUID"], "upscaleFactor": 2})
        assert upscaled["width"] == 80, upscaled
        assert (await run_task(ws, {"taskType": "ping", "taskUUID": task_uuid()}))["pong"] is True


async def test_every_dialect_is_billed_exactly_per_key_and_metric(server_factory, project, owner):
    await sync_to_async(prices_set)(DEFAULT_PRICES)
    await sync_to_async(prices_set)(PROJECT_PRICES, project=project)
    realtime_row, realtime_raw = await sync_to_async(key_for)(project, owner, EnvironmentKind.DEVELOPMENT, "realtime")
    conversation_row, conversation_raw = await sync_to_async(key_for)(project, owner, EnvironmentKind.DEVELOPMENT,
                                                                      "conversation")
    tasks_row, tasks_raw = await sync_to_async(key_for)(project, owner, EnvironmentKind.STAGING, "tasks")
    rooms_row, rooms_raw = await sync_to_async(key_for)(project, owner, EnvironmentKind.PRODUCTION, "rooms")

    async with ScriptedUpstream(audio_delta_bytes=4800, usage=(11, 7)) as upstream:
        deployment = await make_custom_deployment(project, upstream.url)
        server = server_factory(env={"REALTIME_METER_FLUSH_SECONDS": "0.5"})
        await realtime_session(server, realtime_raw)
        await conversation_session(server, conversation_raw, deployment.deployment_key)
        await tasks_session(server, tasks_raw)
        report = await asyncio.to_thread(run_plan, {"scenario": "send", "count": 5, "clients": [
            {"name": "r", "url": server.http_url, "apiKey": rooms_raw}]})
        assert report["r"]["received"] == [f"m{n}" for n in range(5)]

        expected = {
            (realtime_row.key_id, "audio_in_seconds"): Decimal("1.500"),
            (realtime_row.key_id, "audio_out_seconds"): Decimal("0.200"),
            (realtime_row.key_id, "text_in_tokens"): 22, (realtime_row.key_id, "text_out_tokens"): 14,
            (conversation_row.key_id, "messages"): 3,
            (conversation_row.key_id, "audio_out_seconds"): Decimal("0.300"),
            (conversation_row.key_id, "text_in_tokens"): 33, (conversation_row.key_id, "text_out_tokens"): 21,
            (tasks_row.key_id, "tasks:imageUpload"): 2, (tasks_row.key_id, "tasks:upscale"): 1,
            (rooms_row.key_id, "messages"): 5,
        }

        def settled():
            sessions_ended = not SessionRecord.objects.filter(project=project, ended_at__isnull=True).exists()
            ledger = ledger_by_key_and_metric(project)
            counted = {k: v["quantity"] for k, v in ledger.items() if k[1] != "session_seconds"}
            return sessions_ended and counted == expected and ledger

        ledger = await until(settled)

    prices = {**DEFAULT_PRICES, **PROJECT_PRICES}
    for (key_id, metric), entry in ledger.items():
        price = prices.get(metric, prices["tasks:*"] if metric.startswith("tasks:") else 0)
        assert entry["prices"] == {price}, (key_id, metric, entry)
        assert len(entry["sessions"]) == 1, (key_id, metric, entry)  # one session (meter) per key here
        exact = (entry["quantity"] * price).to_integral_value(rounding=ROUND_FLOOR)
        assert entry["cost"] == exact, (key_id, metric, entry)
    # Rooms messages at the project's override; tasks at tasks:* except upscale's own price.
    assert ledger[(rooms_row.key_id, "messages")]["cost"] == 5 * 90
    assert ledger[(tasks_row.key_id, "tasks:imageUpload")]["cost"] == 2 * 1500
    assert ledger[(tasks_row.key_id, "tasks:upscale")]["cost"] == 2500
    assert ledger[(realtime_row.key_id, "audio_in_seconds")]["cost"] == 1501  # 1.5 s x 1001, rounded down
    # Session time: the realtime session lasted over 1.2 s; the conversation a moment.
    assert Decimal("1.2") < ledger[(realtime_row.key_id, "session_seconds")]["quantity"] < Decimal("30")
    assert Decimal("0") < ledger[(conversation_row.key_id, "session_seconds")]["quantity"] < Decimal("30")
    # Session time was flushed in several rows (the meter's periodic flushes), yet costs its exact total.
    rows = await sync_to_async(UsageRecord.objects.filter(key_id=realtime_row.key_id, metric="session_seconds").count)()
    assert rows >= 2
    assert not {tasks_row.key_id, rooms_row.key_id} & {k for k, m in ledger if m == "session_seconds"}
    # The month's spend that budgets read is the ledger's, key by key.
    spend = await sync_to_async(lambda: dict(MonthlySpend.objects.filter(project=project).values_list(
        "key_id", "cost_micros")))()
    by_key: dict[str, int] = {}
    for (key_id, _metric), entry in ledger.items():
        by_key[key_id] = by_key.get(key_id, 0) + entry["cost"]
    assert spend == by_key
