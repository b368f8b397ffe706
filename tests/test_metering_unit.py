"""Metering arithmetic, pricing at flush and the ledger's idempotency (runs on SQLite too)."""
from __future__ import annotations

import base64
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from accounts.models import MonthlySpend, UsageRecord
from realtime.gateway.metering import (
    SessionMeter,
    audio_bytes_per_second,
    base64_decoded_length,
    session_audio_formats,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 4799, 4800, 48000])
def test_base64_length_gives_the_decoded_byte_count(size):
    assert base64_decoded_length(base64.b64encode(bytes(size)).decode()) == size


@pytest.mark.parametrize("fmt, rate", [
    (None, 48000), ("pcm16", 48000), ("g711_ulaw", 8000), ("g711_alaw", 8000),
    ({"type": "audio/pcm", "rate": 24000}, 48000), ({"type": "audio/pcmu"}, 8000), ({"type": "audio/pcma"}, 8000),
    ({"type": "audio/pcm", "rate": 16000}, 32000),
])
def test_bytes_per_second_of_each_format(fmt, rate):
    assert audio_bytes_per_second(fmt) == rate


def test_formats_are_read_from_either_protocol_generation():
    ga = {"audio": {"input": {"format": {"type": "audio/pcmu"}}, "output": {"format": {"type": "audio/pcma"}}}}
    assert session_audio_formats(ga) == ({"type": "audio/pcmu"}, {"type": "audio/pcma"})
    assert session_audio_formats({"input_audio_format": "g711_ulaw"}) == ("g711_ulaw", None)


@pytest.mark.django_db(transaction=True)
async def test_a_meter_writes_exact_amounts_once_per_batch(dev_key):
    from accounts.keys import api_key_verify

    row, raw = dev_key
    key = await sync_to_async(api_key_verify)(raw=raw)
    meter = SessionMeter(key=key, session_id="sess_unit", dialect="realtime")
    one_second_pcm = base64.b64encode(bytes(48000)).decode()
    meter.add_audio("audio_in_seconds", one_second_pcm, 48000)
    meter.add_audio("audio_in_seconds", base64.b64encode(bytes(4000)).decode(), 8000)  # 0.5 s of G.711
    meter.add("text_in_tokens", 11)
    await meter.flush()
    meter.add("text_in_tokens", 4)
    meter.add("text_out_tokens", 7)
    await meter.close()

    rows = await sync_to_async(list)(UsageRecord.objects.filter(session_id="sess_unit").order_by("idempotency_key"))
    totals: dict[str, Decimal] = {}
    for record in rows:
        totals[record.metric] = totals.get(record.metric, Decimal(0)) + record.quantity
        assert record.api_key_id == row.pk and record.key_id == row.key_id and record.project_id == row.project_id
    assert totals["audio_in_seconds"] == Decimal("1.500")
    assert totals["text_in_tokens"] == 15 and totals["text_out_tokens"] == 7
    assert Decimal(0) < totals["session_seconds"] < Decimal(5)
    assert {r.idempotency_key.split(":")[1] for r in rows} == {"1", "2"}  # two batches


@pytest.mark.django_db(transaction=True)
async def test_a_flush_retried_after_an_uncertain_write_is_counted_once_at_its_first_prices(dev_key, monkeypatch):
    """The database commits a batch but the acknowledgement is lost (the connection drops): the meter
    cannot know, so it writes the same batch again. It must count once, at the prices it was first
    written with, and usage that arrived meanwhile goes into the next batch."""
    from django.db import OperationalError

    from accounts.keys import api_key_verify
    from realtime.gateway import metering
    from tests.test_billing_support import prices_set

    row, raw = dev_key
    await sync_to_async(prices_set)({"audio_in_seconds": 1000, "text_in_tokens": 5})
    key = await sync_to_async(api_key_verify)(raw=raw)
    written = []
    real_write = metering._ledger_write

    def commit_then_lose_the_answer(**batch):
        real_write(**batch)
        written.append(batch["seq"])
        if len(written) == 1:
            raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(metering, "_ledger_write", commit_then_lose_the_answer)
    meter = SessionMeter(key=key, session_id="sess_uncertain", dialect="realtime", count_session_time=False)
    meter.add("audio_in_seconds", Decimal("1.5"))
    meter.add("text_in_tokens", 10)
    with pytest.raises(OperationalError):
        await meter.flush()
    await sync_to_async(prices_set)({"audio_in_seconds": 2000, "text_in_tokens": 7})  # a new price list
    meter.add("text_in_tokens", 4)  # arrives while the first batch is unresolved
    await meter.flush()  # the same batch again
    await meter.close()  # then the rest

    assert written == [1, 1, 2]
    rows = await sync_to_async(list)(UsageRecord.objects.filter(session_id="sess_uncertain").order_by("idempotency_key")
                                     .values_list("idempotency_key", "quantity", "unit_price_micros", "cost_micros"))
    assert rows == [
        ("sess_uncertain:1:audio_in_seconds", Decimal("1.500"), 1000, 1500),
        ("sess_uncertain:1:text_in_tokens", Decimal(10), 5, 50),
        ("sess_uncertain:2:text_in_tokens", Decimal(4), 7, 28),
    ]
    # The month's spend behind budgets counted the retried batch once too.
    spend = await sync_to_async(list)(MonthlySpend.objects.filter(key_id=row.key_id).values_list("cost_micros", flat=True))
    assert spend == [1500 + 50 + 28]


@pytest.mark.django_db(transaction=True)
async def test_each_row_keeps_its_unit_price_and_a_session_is_charged_its_exact_cost_rounded_down(dev_key):
    from accounts.keys import api_key_verify
    from tests.test_billing_support import prices_set

    _, raw = dev_key
    await sync_to_async(prices_set)({"audio_out_seconds": 333})
    key = await sync_to_async(api_key_verify)(raw=raw)
    meter = SessionMeter(key=key, session_id="sess_rounding", dialect="realtime", count_session_time=False)
    for _ in range(10):  # ten flushes of 0.001 s: 0.333 micro-units each
        meter.add("audio_out_seconds", Decimal("0.001"))
        await meter.flush()
    await meter.close()
    rows = await sync_to_async(list)(UsageRecord.objects.filter(session_id="sess_rounding")
                                     .values_list("unit_price_micros", "cost_micros"))
    assert len(rows) == 10 and {price for price, _ in rows} == {333}
    # 10 x 0.333 = 3.33 micro-units: 3 charged in all (each row alone would round to 0).
    assert sum(cost for _, cost in rows) == 3
