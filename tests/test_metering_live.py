"""A session through the gateway reports its usage to the ledger: session time, audio by bytes and
format, and tokens from the upstream's response.done usage."""
from __future__ import annotations

import base64
import json
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from accounts.models import UsageRecord
from realtime.models import SessionRecord
from tests.test_gateway_support import (
    ScriptedUpstream,
    bearer,
    connect,
    make_custom_deployment,
    recv_json,
    recv_until,
    session_url,
    until,
)

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _totals(session_id: str) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for metric, quantity in UsageRecord.objects.filter(session_id=session_id).values_list("metric", "quantity"):
        totals[metric] = totals.get(metric, Decimal(0)) + quantity
    return totals


async def test_usage_is_metered_while_live_and_completed_at_the_end(server_factory, project, dev_key):
    _, raw = dev_key
    async with ScriptedUpstream(audio_delta_bytes=4800, usage=(11, 7)) as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory(env={"REALTIME_METER_FLUSH_SECONDS": "0.5"})
        async with await connect(session_url(server, "meter"), bearer(raw)) as ws:
            await recv_json(ws)
            up = await upstream.next_connection()
            session_id = up.headers["X-Session"]
            # 1 s of PCM16 24 kHz, then switch to G.711 and send 0.5 s.
            await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                      "audio": base64.b64encode(bytes(48000)).decode()}))
            await ws.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}}}}}))
            await recv_until(ws, "session.updated")
            await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                      "audio": base64.b64encode(bytes(4000)).decode()}))
            await ws.send(json.dumps({"type": "response.create"}))
            await recv_until(ws, "response.done")
            # Flushed while the session is still live, not only at its end.
            live = await until(lambda: _totals(session_id).get("audio_in_seconds") == Decimal("1.500"))
            assert live
        await until(lambda: SessionRecord.objects.filter(session_id=session_id, ended_at__isnull=False).exists())
    totals = await sync_to_async(_totals)(session_id)
    assert totals["audio_in_seconds"] == Decimal("1.500")
    assert totals["audio_out_seconds"] == Decimal("0.100")  # 4800 bytes of PCM16 24 kHz
    assert (totals["text_in_tokens"], totals["text_out_tokens"]) == (11, 7)
    assert Decimal("0") < totals["session_seconds"] < Decimal("30")
    keys = await sync_to_async(list)(UsageRecord.objects.filter(session_id=session_id).values_list("idempotency_key", flat=True))
    assert len(keys) == len(set(keys))
    record = await sync_to_async(SessionRecord.objects.get)(session_id=session_id)
    assert record.close_reason == "client_closed" and record.key_id == dev_key[0].key_id
