"""The conversation dialect (seed 002) against real daphne processes: the seed's example with the
built-in local agent, resume with conversationId (its history reaches the agent), cleanup of the
upstream on close, every bad-parameter case, and usage in the ledger."""
from __future__ import annotations

import asyncio
import json
import uuid
from urllib.parse import urlencode

import pytest
import websockets
from asgiref.sync import sync_to_async

from accounts.models import EnvironmentKind, UsageRecord
from realtime.models import Conversation
from tests.test_gateway_support import ScriptedUpstream, make_custom_deployment

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

TIMEOUT = 30


@sync_to_async
def deployment_key(project, kind=EnvironmentKind.DEVELOPMENT) -> str:
    return project.deployments.get(environment__kind=kind, is_default=True).deployment_key


def url(server, **params) -> str:
    return f"{server.ws_url}/v1/conversation?{urlencode({k: v for k, v in params.items() if v is not None})}"


async def connect(server, **params):
    return await websockets.connect(url(server, **params), open_timeout=TIMEOUT, compression=None)


async def recv_json(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


def request(text: str, user_id: str = "0da722ad-cb3f-4938-a447-82ee53733362") -> str:
    return json.dumps({"request": {"unstructured": {"text": text}}, "userId": user_id})


async def expect_refusal(ws) -> tuple[dict, int]:
    message = await recv_json(ws)
    assert "error" in message, message
    async with asyncio.timeout(TIMEOUT):
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed:
            pass
    return message["error"], ws.close_code


async def test_seed_002_example_and_resume_with_the_local_agent(server_factory, project, dev_key):
    row, raw = dev_key
    server = server_factory()
    deployment = await deployment_key(project)
    async with await connect(server, deploymentKey=deployment, channelKey="web-en-US", apiKey=raw) as ws:
        conversation_id = (await recv_json(ws))["conversationId"]
        uuid.UUID(conversation_id)
        await ws.send(request("Book a flight to London"))
        response = await recv_json(ws)
        assert response["conversationId"] == conversation_id
        [message] = response["messages"]
        assert message["type"] == "text" and message["text"] == "I heard you. You said: Book a flight to London."
        uuid.UUID(message["messageId"])
        # Bad messages are answered and lose nothing: the conversation goes on.
        await ws.send("{oops")
        assert (await recv_json(ws))["error"]["code"] == "invalid_json"
        await ws.send(json.dumps({"request": {"structured": {}}}))
        bad = await recv_json(ws)
        assert (bad["error"]["code"], bad["conversationId"]) == ("invalid_request", conversation_id)
        # Two requests back to back are answered in order.
        await ws.send(request("first"))
        await ws.send(request("second"))
        assert [(await recv_json(ws))["messages"][0]["text"] for _ in range(2)] == [
            "I heard you. You said: first.", "I heard you. You said: second."]

    async with await connect(server, deploymentKey=deployment, channelKey="web-en-US", apiKey=raw,
                             conversationId=conversation_id) as ws:
        assert await recv_json(ws) == {"conversationId": conversation_id}
        await ws.send(request("What date?"))
        response = await recv_json(ws)
        assert response["conversationId"] == conversation_id
        assert response["messages"][0]["text"] == "I heard you. You said: What date?."

    conversation = await sync_to_async(Conversation.objects.get)(conversation_id=conversation_id)
    # Stored after the answer leaves (the answer never waits on the database), before the connection ends.
    async with asyncio.timeout(15):
        while len(turns := await sync_to_async(lambda: list(conversation.turns.values_list("role", "text")))()) < 8:
            await asyncio.sleep(0.05)  # written by the server process; no event reaches the test
    assert turns == [
        ("user", "Book a flight to London"), ("assistant", "I heard you. You said: Book a flight to London."),
        ("user", "first"), ("assistant", "I heard you. You said: first."),
        ("user", "second"), ("assistant", "I heard you. You said: second."),
        ("user", "What date?"), ("assistant", "I heard you. You said: What date?."),
    ]
    assert (conversation.channel_key, conversation.language) == ("web", "en-US")

    @sync_to_async
    def totals():
        out: dict[str, float] = {}
        for usage in UsageRecord.objects.filter(api_key=row, dialect="conversation"):
            out[usage.metric] = out.get(usage.metric, 0) + float(usage.quantity)
        return out

    async with asyncio.timeout(15):
        while (usage := await totals()).get("messages") != 4:
            await asyncio.sleep(0.1)  # flushed by the server process at session end; no event reaches the test
    assert usage["text_in_tokens"] > 0 and usage["text_out_tokens"] > 0
    assert raw not in server.log()


async def test_resume_replays_history_to_the_agent_and_close_ends_the_upstream(server_factory, project, dev_key):
    _, raw = dev_key
    async with ScriptedUpstream() as upstream:
        deployment = await make_custom_deployment(project, upstream.url, default=False, name="Scripted conv")
        server = server_factory()
        params = dict(apiKey=raw, deploymentKey=deployment.deployment_key, channelKey="kiosk-7-fr-FR")
        async with await connect(server, **params) as ws:
            conversation_id = (await recv_json(ws))["conversationId"]
            up = await upstream.next_connection()
            await ws.send(request("Bonjour"))
            assert (await recv_json(ws))["messages"][0]["text"] == "Hello"
        # Closing the socket ends the upstream session.
        await asyncio.wait_for(up.ws.wait_closed(), TIMEOUT)

        async with await connect(server, **params, conversationId=conversation_id) as ws:
            await recv_json(ws)
            again = await upstream.next_connection()
            await ws.send(request("Encore"))
            await recv_json(ws)
            items = [json.loads(m) for m in again.received]
        created = [(e["item"]["role"], e["item"]["content"][0]["text"]) for e in items
                   if e["type"] == "conversation.item.create"]
        assert created == [("user", "Bonjour"), ("assistant", "Hello"), ("user", "Encore")]
        # Text modality was asked for before anything else the client said.
        first = next(e for e in items if e["type"] != "session.update" or
                     e["session"].get("output_modalities") == ["text"])
        assert first["type"] == "session.update"


async def test_every_bad_parameter_is_refused_with_a_code(server_factory, project, dev_key, other_key, other_project):
    _, raw = dev_key
    _, other_raw = other_key
    server = server_factory()
    deployment = await deployment_key(project)
    staging_deployment = await deployment_key(project, EnvironmentKind.STAGING)
    good = dict(apiKey=raw, deploymentKey=deployment, channelKey="web-en-US")
    async with await connect(server, **good) as ws:
        conversation_id = (await recv_json(ws))["conversationId"]
    other_deployment = await deployment_key(other_project)
    async with await connect(server, apiKey=other_raw, deploymentKey=other_deployment, channelKey="web-en-US") as ws:
        foreign_id = (await recv_json(ws))["conversationId"]
    mistyped = raw[:10] + ("a" if raw[10] != "a" else "b") + raw[11:]

    cases = [
        ({**good, "apiKey": None}, "missing_api_key", 4401),
        ({**good, "apiKey": mistyped}, "bad_checksum", 4401),
        ({**good, "apiKey": "sb_dev_nope"}, "malformed_key", 4401),
        ({**good, "deploymentKey": None}, "missing_deployment_key", 4400),
        ({**good, "deploymentKey": "dep_unknown"}, "deployment_not_found", 4404),
        ({**good, "deploymentKey": staging_deployment}, "deployment_not_found", 4404),  # another environment's
        ({**good, "deploymentKey": other_deployment}, "deployment_not_found", 4404),  # another project's
        ({**good, "channelKey": None}, "missing_channel_key", 4400),
        ({**good, "channelKey": "web"}, "invalid_channel_key", 4400),
        ({**good, "conversationId": "12345"}, "invalid_conversation_id", 4400),
        ({**good, "conversationId": str(uuid.uuid4())}, "conversation_not_found", 4404),
        ({**good, "conversationId": foreign_id}, "conversation_not_found", 4404),
    ]
    for params, code, close_code in cases:
        async with await connect(server, **params) as ws:
            error, closed_with = await expect_refusal(ws)
        assert (error["code"], closed_with) == (code, close_code), params
    # The good parameters still work, and resume the first conversation.
    async with await connect(server, **good, conversationId=conversation_id) as ws:
        assert await recv_json(ws) == {"conversationId": conversation_id}
