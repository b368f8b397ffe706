"""A server process killed with SIGKILL mid-session: the ledger keeps everything up to its last flush
(so it is within one flush interval of the truth) and never holds more than the truth."""
from __future__ import annotations

import asyncio
import base64
import json
import time
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from accounts.models import UsageRecord
from tests.test_billing_support import prices_set
from tests.test_gateway_support import (
    ScriptedUpstream,
    bearer,
    connect,
    make_custom_deployment,
    recv_until,
    session_url,
)
from tests.test_tasks_support import b64, new_connection, png_bytes, run_task, task_uuid
from tests.test_tasks_support import connect as tasks_connect

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

FLUSH_SECONDS = 0.5
CHUNK_SECONDS = Decimal("0.1")  # each append: 0.1 s of PCM16 24 kHz
CHUNK = base64.b64encode(bytes(4800)).decode()
# A flush is a database write after the interval; allow for it and for the append being processed.
WRITE_ALLOWANCE = Decimal("0.3")


def _metered(key_id: str, metric: str) -> Decimal:
    return sum(UsageRecord.objects.filter(key_id=key_id, metric=metric).values_list("quantity", flat=True),
               Decimal(0))


async def test_sigkill_mid_session_loses_at_most_one_flush_interval_and_never_over_counts(
        server_factory, project, dev_key):
    row, raw = dev_key
    await sync_to_async(prices_set)({"audio_in_seconds": 1000, "session_seconds": 10})
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory(env={"REALTIME_METER_FLUSH_SECONDS": str(FLUSH_SECONDS)})
        async with await connect(session_url(server, "crash"), bearer(raw)) as ws:
            await recv_until(ws, "session.created")
            up = await upstream.next_connection()
            opened = time.monotonic()
            sent = 0

            async def stream(chunks: int) -> None:
                nonlocal sent
                for _ in range(chunks):  # real time: 0.1 s of audio every 0.1 s, as a microphone sends it
                    await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": CHUNK}))
                    sent += 1
                    await asyncio.sleep(float(CHUNK_SECONDS))

            await stream(12)
            # The ledger grows while the session is live (periodic flushes), not only at its end.
            async with asyncio.timeout(15):
                while await sync_to_async(_metered)(row.key_id, "audio_in_seconds") == 0:
                    await asyncio.sleep(0.05)
            await stream(13)
            await asyncio.to_thread(server.kill)
            killed = time.monotonic()

    client_sent = sent * CHUNK_SECONDS
    relayed = sum(1 for m in up.received if '"input_audio_buffer.append"' in m) * CHUNK_SECONDS  # the server had these
    ledger = await sync_to_async(_metered)(row.key_id, "audio_in_seconds")
    assert relayed <= client_sent == Decimal("2.5")
    assert ledger <= client_sent, (ledger, client_sent)  # never above the truth
    # At most one flush interval of real-time audio (plus the write) is lost.
    assert relayed - ledger <= Decimal(str(FLUSH_SECONDS)) + CHUNK_SECONDS + WRITE_ALLOWANCE, (ledger, relayed)
    seconds = await sync_to_async(_metered)(row.key_id, "session_seconds")
    assert Decimal(0) < seconds <= Decimal(str(round(killed - opened, 3))) + Decimal("0.5")
    # Each row is in once, and the rows carry their prices.
    rows = await sync_to_async(list)(UsageRecord.objects.filter(key_id=row.key_id, metric="audio_in_seconds")
                                     .values_list("idempotency_key", "unit_price_micros", "cost_micros", "quantity"))
    assert len({key for key, *_ in rows}) == len(rows) >= 2
    assert all(price == 1000 and cost == int(quantity * 1000) for _, price, cost, quantity in rows)


async def test_every_task_result_delivered_before_a_sigkill_is_in_the_ledger(server_factory, dev_key):
    """A task's usage is written before its result leaves the server: a crash right after a delivery
    cannot lose what the client was given."""
    row, raw = dev_key
    server = server_factory()
    delivered = 0
    async with await tasks_connect(server) as ws:
        await new_connection(ws, raw)
        for _ in range(3):
            result = await run_task(ws, {"taskType": "imageUpload", "taskUUID": task_uuid(), "image": b64(png_bytes())})
            assert result.get("imageUUID"), result
            delivered += 1
        await asyncio.to_thread(server.kill)
    assert await sync_to_async(_metered)(row.key_id, "tasks:imageUpload") == delivered == 3
