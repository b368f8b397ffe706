"""Metering arithmetic and the ledger's idempotency (runs on SQLite too)."""
from __future__ import annotations

import base64
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from accounts.models import UsageRecord
from realtime.metering import (
    SessionMeter,
    _ledger_write,
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


@pytest.mark.django_db
def test_a_retried_batch_is_counted_once(dev_key):
    from accounts.keys import api_key_verify

    _, raw = dev_key
    key = api_key_verify(raw=raw)
    batch = {"audio_out_seconds": Decimal("0.100"), "text_out_tokens": Decimal(3)}
    _ledger_write(key=key, session_id="sess_retry", dialect="realtime", seq=1, amounts=batch)
    # The same batch again, as after a write whose outcome was unknown.
    _ledger_write(key=key, session_id="sess_retry", dialect="realtime", seq=1, amounts=batch)
    assert UsageRecord.objects.filter(session_id="sess_retry").count() == 2
