"""The official ``openai`` Python SDK's realtime client works through Switchboard with an API key.

The SDK builds ``<websocket_base_url>/realtime?model=…`` and sends ``Authorization: Bearer <api_key>``,
so pointing ``websocket_base_url`` at a Switchboard server's ``/v1`` is all a customer changes. The
project's default deployment is the built-in local agent.
"""
from __future__ import annotations

import asyncio

import pytest
from openai import AsyncOpenAI
from websockets.exceptions import ConnectionClosed

from accounts.keys import checksum

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

TURN_TIMEOUT = 90


async def sdk_text_turn(*, base_url: str, api_key: str, text: str) -> tuple[list, str]:
    """One text turn with the SDK: returns (events in order, the concatenated text deltas)."""
    client = AsyncOpenAI(api_key=api_key, websocket_base_url=base_url)
    events, deltas = [], []
    async with client.realtime.connect(model="gpt-realtime") as connection:
        await connection.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await connection.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        )
        await connection.response.create()
        async with asyncio.timeout(TURN_TIMEOUT):
            async for event in connection:
                events.append(event)
                if event.type == "response.output_text.delta":
                    deltas.append(event.delta)
                if event.type in ("response.done", "error"):
                    break
    return events, "".join(deltas)


async def test_openai_sdk_realtime_client_through_the_gateway(server_factory, dev_key):
    _row, raw_key = dev_key
    server = server_factory()

    events, text = await sdk_text_turn(base_url=f"{server.ws_url}/v1", api_key=raw_key, text="Hello from the SDK")

    types = [event.type for event in events]
    log = server.log()
    assert types[0] == "session.created", (types, log[-4000:])
    assert "error" not in types, ([e for e in events if e.type == "error"], log[-4000:])
    assert "session.updated" in types, types
    assert "response.output_text.delta" in types, types
    assert "Hello from the SDK" in text, text  # the local agent's echo assistant repeats the message
    done = events[-1]
    assert done.type == "response.done" and done.response.status == "completed", types
    # Deltas come before their response.done, after the session was configured.
    assert types.index("session.updated") < types.index("response.output_text.delta") < len(types) - 1
    assert raw_key not in log, "the API key reached the server log"


async def test_openai_sdk_with_an_unknown_key_is_told_why_and_gets_no_session(server_factory):
    server = server_factory()
    unknown = "sb_dev_" + "A" * 32
    unknown += checksum(unknown)  # well formed, valid checksum, never issued

    client = AsyncOpenAI(api_key=unknown, websocket_base_url=f"{server.ws_url}/v1")
    events = []
    with pytest.raises(ConnectionClosed) as closed:
        async with client.realtime.connect(model="gpt-realtime") as connection:
            async with asyncio.timeout(30):
                async for event in connection:
                    events.append(event)

    assert [event.type for event in events] == ["error"], events
    assert events[0].error.code == "unknown_key"
    assert closed.value.rcvd.code == 4401
