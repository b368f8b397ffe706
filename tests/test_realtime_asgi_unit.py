"""The realtime dialect is a plain ASGI application inside project.asgi: Channels' WebsocketCommunicator
drives it like any consumer. Refusals are an error event with a stable code, then the close code."""
from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator

from project.asgi import application

pytestmark = [pytest.mark.unit, pytest.mark.django_db(transaction=True)]


async def _refusal(path: str, headers=None):
    communicator = WebsocketCommunicator(application, path, headers=headers or [], subprotocols=["realtime"])
    connected, subprotocol = await communicator.connect()
    event = await communicator.receive_json_from()
    closed = await communicator.receive_output()
    await communicator.disconnect()
    return connected, subprotocol, event, closed


async def test_a_bad_session_key_is_refused_with_its_code():
    connected, subprotocol, event, closed = await _refusal("/api/v1/realtime/session?key=no%20spaces&protocol=realtime")
    assert (connected, subprotocol) == (True, "realtime")  # accepted first, so the refusal can say why
    assert event["type"] == "error" and event["error"]["code"] == "invalid_session_key"
    assert closed == {"type": "websocket.close", "code": 4400, "reason": "invalid_session_key"}


async def test_an_unsupported_protocol_is_refused():
    _, _, event, closed = await _refusal("/api/v1/realtime/session?key=s1&protocol=other")
    assert event["error"]["code"] == "unsupported_protocol" and closed["code"] == 4400


async def test_a_missing_protocol_is_refused_with_its_code():
    # Seed 004 marks protocol as required.
    _, _, event, closed = await _refusal("/api/v1/realtime/session?key=s1")
    assert event["error"]["code"] == "missing_protocol" and closed == {
        "type": "websocket.close", "code": 4400, "reason": "missing_protocol"}


async def test_a_connection_without_credentials_is_refused():
    _, _, event, closed = await _refusal("/v1/realtime")
    assert event["error"] == {"type": "authentication_error", "code": "missing_credentials",
                              "message": event["error"]["message"], "param": None, "event_id": None}
    assert closed["code"] == 4401


async def test_a_mistyped_api_key_is_refused_without_a_lookup():
    _, _, event, closed = await _refusal("/v1/realtime", headers=[(b"authorization", b"Bearer sb_dev_" + b"A" * 38)])
    assert event["error"]["code"] == "bad_checksum" and closed["code"] == 4401
