"""Seed 004's "Session Config" example, sent through the gateway to the built-in local agent, comes back
whole in ``session.updated``: every field the seed shows keeps its value (``audio.output.model``
included)."""
from __future__ import annotations

import json

import pytest

from tests.test_gateway_support import basic, connect, recv_json, recv_until, session_url
from tests.test_local_agent_config import SEED_004_SESSION, missing_fields

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


async def test_the_seeds_session_config_is_kept_in_session_updated(server_factory, dev_key):
    _row, raw_key = dev_key
    server = server_factory()
    async with await connect(session_url(server, "seed-config"), basic(raw_key)) as ws:
        assert (await recv_json(ws))["type"] == "session.created"
        await ws.send(json.dumps({"type": "session.update", "session": SEED_004_SESSION}))
        updated, before = await recv_until(ws, "session.updated")
        assert [e for e in before if e.get("type") == "error"] == []
        assert missing_fields(SEED_004_SESSION, updated["session"]) == [], updated["session"]
