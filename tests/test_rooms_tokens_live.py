"""Rooms (seed 003) accept the short-lived JWTs the realtime dialect accepts (handshake ``auth: {token}``),
so a browser needs no API key; a refused token is a connect_error with the token's code. A real
Socket.IO client (python-socketio's AsyncClient) against a real daphne process."""
from __future__ import annotations

import asyncio

import pytest
import socketio
from asgiref.sync import sync_to_async

from accounts.services import api_key_revoke

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

TIMEOUT = 15


def _mint(key_pk, **kwargs) -> str:
    from realtime.gateway.tokens import token_mint

    return token_mint(api_key_pk=str(key_pk), **kwargs)[0]


mint = sync_to_async(_mint)


async def open_room(server, auth: dict):
    """(client, inbox) connected, or the connect_error data."""
    client = socketio.AsyncClient(reconnection=False)
    inbox: asyncio.Queue = asyncio.Queue()
    refused: asyncio.Future = asyncio.get_running_loop().create_future()
    client.on("message", inbox.put_nowait)
    client.on("connect_error", lambda data: refused.done() or refused.set_result(data))
    try:
        await client.connect(server.http_url, auth=auth, transports=["websocket"], wait_timeout=TIMEOUT)
    except socketio.exceptions.ConnectionError:
        return None, await asyncio.wait_for(refused, TIMEOUT)
    return client, inbox


async def test_a_token_joins_the_keys_room_and_a_refused_token_says_why(server_factory, project, dev_key):
    row, raw = dev_key
    server = server_factory()
    token = await mint(row.pk)
    browser, browser_inbox = await open_room(server, {"token": token})
    backend, backend_inbox = await open_room(server, {"apiKey": raw})
    assert browser is not None and backend is not None
    try:
        await browser.emit("message", "from the browser")
        for inbox in (browser_inbox, backend_inbox):  # the same project-and-environment room
            assert await asyncio.wait_for(inbox.get(), TIMEOUT) == "from the browser"
    finally:
        await browser.disconnect()
        await backend.disconnect()

    client, refusal = await open_room(server, {"token": token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")})
    assert client is None and refusal["data"] == {"code": "token_bad_signature"}
    client, refusal = await open_room(server, {})
    assert client is None and refusal["data"] == {"code": "missing_api_key"} and "token" in refusal["message"]
    await sync_to_async(api_key_revoke)(api_key=row)
    client, refusal = await open_room(server, {"token": token})
    assert client is None and refusal["data"] == {"code": "token_key_revoked"}
