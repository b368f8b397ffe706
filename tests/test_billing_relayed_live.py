"""Billing from what was relayed, through a real server process and a loopback upstream: audio from its
bytes at a format the upstream confirmed from an allow-list (never a rate a client declares), audio
inside conversation.item.create counted, and upstream token usage used only when it is sane."""
from __future__ import annotations

import base64
import json
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from accounts.models import MonthlySpend, UsageRecord
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

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

PRICES = {"audio_in_seconds": 1001, "audio_out_seconds": 3999, "text_in_tokens": 5, "text_out_tokens": 21}
SECOND = base64.b64encode(bytes(48000)).decode()  # 1 s of PCM16 24 kHz
HALF_SECOND = base64.b64encode(bytes(24000)).decode()

# (rate a client declares in session.update, usage the upstream reports, tokens that must be billed)
CASES = [
    (1e12, {"input_tokens": -1_000_000_000, "output_tokens": 7}, (0, 7)),
    (0.5, {"input_tokens": 10**20, "output_tokens": 5}, (0, 5)),
    (1, {"input_tokens": "11", "output_tokens": 3}, (0, 3)),
    (True, {"input_tokens": 11, "output_tokens": "a lot"}, (11, 0)),
]


def _totals(session_id: str) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for metric, quantity in UsageRecord.objects.filter(session_id=session_id).values_list("metric", "quantity"):
        totals[metric] = totals.get(metric, Decimal(0)) + quantity
    return totals


class UsageUpstream(ScriptedUpstream):
    """The scripted upstream, reporting ``self.raw_usage`` verbatim in response.done."""

    raw_usage: dict = {}

    async def _handle(self, ws):
        original = ws.send

        async def send(message, *args, **kwargs):
            event = json.loads(message)
            if event.get("type") == "response.done":
                event["response"]["usage"] = self.raw_usage
                message = json.dumps(event)
            await original(message, *args, **kwargs)

        ws.send = send
        await super()._handle(ws)


async def test_declared_rates_and_bad_usage_are_billed_exactly_from_bytes_and_valid_usage(
        server_factory, project, dev_key, caplog):
    row, raw = dev_key
    await sync_to_async(prices_set)(PRICES)
    async with UsageUpstream(audio_delta_bytes=4800) as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory(env={"REALTIME_METER_FLUSH_SECONDS": "0.5"})
        sessions = []
        for number, (rate, usage, tokens) in enumerate(CASES):
            upstream.raw_usage = usage
            async with await connect(session_url(server, f"relayed{number}"), bearer(raw)) as ws:
                await recv_until(ws, "session.created")
                up = await upstream.next_connection()
                # The client declares an absurd input rate; the (permissive) upstream even echoes it back.
                await ws.send(json.dumps({"type": "session.update", "session": {
                    "type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": rate}}}}}))
                updated, _ = await recv_until(ws, "session.updated")
                assert updated["session"]["audio"]["input"]["format"]["rate"] == rate
                for _ in range(2):
                    await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": SECOND}))
                # Audio inside a conversation item counts too.
                await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                    "type": "message", "role": "user", "content": [{"type": "input_audio", "audio": HALF_SECOND}]}}))
                await recv_until(ws, "conversation.item.done")
                await ws.send(json.dumps({"type": "response.create"}))
                await recv_until(ws, "response.done")
                # The bad usage did not break the session: it still answers.
                await ws.send(json.dumps({"type": "response.create"}))
                await recv_until(ws, "response.done")
            sessions.append((up.headers["X-Session"], tokens))

        await until(lambda: SessionRecord.objects.filter(project=project, ended_at__isnull=False).count() == len(CASES))
        for session_id, (tokens_in, tokens_out) in sessions:
            expected = {"audio_in_seconds": Decimal("2.500"), "audio_out_seconds": Decimal("0.200")}
            if tokens_in:
                expected["text_in_tokens"] = Decimal(2 * tokens_in)
            if tokens_out:
                expected["text_out_tokens"] = Decimal(2 * tokens_out)

            def billed(session_id=session_id, expected=expected):
                totals = _totals(session_id)
                totals.pop("session_seconds", None)
                return totals == expected

            assert await until(billed), (session_id, await sync_to_async(_totals)(session_id))
            record = await sync_to_async(SessionRecord.objects.get)(session_id=session_id)
            assert record.close_reason == "client_closed", record.close_reason

    # The month's spend is the ledger's, and nothing in it is negative.
    costs = await sync_to_async(lambda: list(UsageRecord.objects.filter(project=project).values_list(
        "cost_micros", flat=True)))()
    spend = await sync_to_async(lambda: list(MonthlySpend.objects.filter(project=project).values_list(
        "cost_micros", flat=True)))()
    assert min(costs) >= 0 and spend == [sum(costs)]
    # Each ignored usage was logged, without the value it held.
    log = server.log()
    assert log.count("upstream usage") >= 2 * len(CASES) and "a lot" not in log
