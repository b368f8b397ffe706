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
    audio_event_bytes,
    base64_decoded_length,
    response_usage_tokens,
    session_audio_formats,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 4799, 4800, 48000])
def test_base64_length_gives_the_decoded_byte_count(size):
    assert base64_decoded_length(base64.b64encode(bytes(size)).decode()) == size


@pytest.mark.parametrize("fmt, rate", [
    ("pcm16", 48000), ("g711_ulaw", 8000), ("g711_alaw", 8000), ({"type": "audio/pcm"}, 48000),
    ({"type": "audio/pcm", "rate": 24000}, 48000), ({"type": "audio/pcmu"}, 8000), ({"type": "audio/pcma"}, 8000),
])
def test_bytes_per_second_of_each_allowed_format(fmt, rate):
    assert audio_bytes_per_second(fmt) == rate


@pytest.mark.parametrize("fmt", [
    None, "pcm24", {"type": "audio/pcm", "rate": 16000}, {"type": "audio/pcm", "rate": 1e12},
    {"type": "audio/pcm", "rate": 0.5}, {"type": "audio/pcm", "rate": 1}, {"type": "audio/pcm", "rate": True},
    {"type": "audio/pcm", "rate": "24000"}, {"type": "audio/opus"}, ["pcm16"], 24000,
])
def test_a_format_outside_the_allow_list_has_no_rate(fmt):
    assert audio_bytes_per_second(fmt) is None


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
    # Numbered batches: the flush, the close (and a periodic take between them on a slow machine).
    batches = {int(r.idempotency_key.split(":")[2]) for r in rows}
    assert batches == set(range(1, len(batches) + 1)) and len(batches) >= 2


@pytest.mark.django_db(transaction=True)
async def test_a_flush_retried_after_an_uncertain_write_is_counted_once_at_its_first_prices(dev_key, monkeypatch):
    """The database commits a batch but the acknowledgement is lost (the connection drops): the writer
    cannot know, so it spools the batch and writes it again. It must count once, at the prices it was first
    written with, and usage that arrived meanwhile goes into the next batch."""
    from django.db import OperationalError

    from accounts.billing import writer
    from accounts.keys import api_key_verify
    from tests.test_billing_support import prices_set

    row, raw = dev_key
    await sync_to_async(prices_set)({"audio_in_seconds": 1000, "text_in_tokens": 5})
    key = await sync_to_async(api_key_verify)(raw=raw)
    written = []
    real_write = writer.ledger_write

    def commit_then_lose_the_answer(*, batches):
        batches = list(batches)
        real_write(batches=batches)
        written.extend(batch.seq for batch in batches)
        if len(written) == 1:
            raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(writer, "ledger_write", commit_then_lose_the_answer)
    meter = SessionMeter(key=key, session_id="sess_uncertain", dialect="realtime", count_session_time=False)
    meter.add("audio_in_seconds", Decimal("1.5"))
    meter.add("text_in_tokens", 10)
    await meter.flush()  # written, but the writer cannot know: the batch is kept in the spool
    assert writer.usage_writer_stats()["spooled_batches"] == 1
    await sync_to_async(prices_set)({"audio_in_seconds": 2000, "text_in_tokens": 7})  # a new price list
    meter.add("text_in_tokens", 4)  # arrives while the first batch is unresolved
    await meter.flush()  # the same batch again, and the new one
    await meter.close()
    assert writer.usage_writer_stats()["spooled_batches"] == 0

    assert written == [1, 1, 2]
    rows = await sync_to_async(list)(UsageRecord.objects.filter(session_id="sess_uncertain").order_by("idempotency_key")
                                     .values_list("idempotency_key", "quantity", "unit_price_micros", "cost_micros"))
    m = meter.meter_id
    assert rows == [
        (f"sess_uncertain:{m}:1:audio_in_seconds", Decimal("1.500"), 1000, 1500),
        (f"sess_uncertain:{m}:1:text_in_tokens", Decimal(10), 5, 50),
        (f"sess_uncertain:{m}:2:text_in_tokens", Decimal(4), 7, 28),
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


@pytest.mark.parametrize("usage, tokens", [
    ({"input_tokens": 11, "output_tokens": 7}, (11, 7)),
    ({"input_tokens": 11, "output_tokens": 7, "input_token_details": {"text_tokens": 5}}, (5, 7)),
    ({"input_tokens": -1_000_000_000, "output_tokens": 7}, (0, 7)),
    ({"input_tokens": 10**20, "output_tokens": 10**20}, (0, 0)),
    ({"input_tokens": "11", "output_tokens": 7.0}, (0, 0)),
    ({"input_tokens": True, "output_tokens": None}, (0, 0)),
    ({"input_token_details": "text", "input_tokens": 3}, (3, 0)),
    ("lots", (0, 0)), (None, (0, 0)), ([1, 2], (0, 0)),
])
def test_upstream_token_usage_counts_only_when_it_is_a_sane_non_negative_integer(usage, tokens):
    assert response_usage_tokens(usage, session_id="sess_x") == tokens


def test_ignored_usage_is_logged_without_its_value(caplog):
    response_usage_tokens({"input_tokens": "sk-secret-looking-value"}, session_id="sess_x")
    assert "input_tokens" in caplog.text and "str" in caplog.text and "secret" not in caplog.text


def test_audio_inside_conversation_item_create_is_counted():
    part = base64.b64encode(bytes(24000)).decode()
    event = {"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
        {"type": "input_audio", "audio": part}, {"type": "input_text", "text": "hello"},
        {"type": "input_audio", "audio": part}]}}
    assert audio_event_bytes(event) == 48000
    assert audio_event_bytes({"type": "conversation.item.create", "item": {"content": "nope"}}) == 0
    assert audio_event_bytes({"type": "input_audio_buffer.append", "audio": part}) == 24000


@pytest.mark.django_db(transaction=True)
async def test_only_the_upstream_confirms_a_format_and_only_an_allowed_one(dev_key):
    from accounts.keys import api_key_verify

    _, raw = dev_key
    key = await sync_to_async(api_key_verify)(raw=raw)
    meter = SessionMeter(key=key, session_id="sess_formats", dialect="realtime", count_session_time=False)
    second = base64.b64encode(bytes(48000)).decode()
    append = {"type": "input_audio_buffer.append", "audio": second}
    # The client declares G.711, then an absurd rate: neither changes what its bytes are billed as.
    meter.client_event({"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/pcmu"}}}}})
    meter.client_event(append)
    # The upstream confirms a rate outside the list: ignored.
    meter.upstream_event("session.updated", {"session": {"audio": {"input": {"format": {"type": "audio/pcm",
                                                                                         "rate": 1e12}}}}})
    meter.client_event(append)
    # The upstream confirms G.711: 48000 bytes are now 6 s.
    meter.upstream_event("session.updated", {"session": {"audio": {"input": {"format": {"type": "audio/pcmu"}}}}})
    meter.client_event(append)
    meter.upstream_event("response.done", {"response": "not an object"})
    meter.upstream_event("response.done", {"response": {"usage": {"input_tokens": -5, "output_tokens": 3}}})
    batch = meter.usage_take()
    assert batch is not None and batch.amounts == {"audio_in_seconds": Decimal("8.000"), "text_out_tokens": 3}
    meter.add("text_in_tokens", -100)  # no count lowers another
    meter.add("text_in_tokens", True)
    assert meter.usage_take() is None
    await meter.close()


def test_the_ledger_drops_what_no_meter_should_send(caplog):
    from accounts.billing.ledger import usage_amounts_clean

    clean = usage_amounts_clean({"audio_in_seconds": Decimal("1.2345"), "text_in_tokens": Decimal(-5),
                                 "text_out_tokens": Decimal(10) ** 20, "made_up": 3, "messages": Decimal("NaN"),
                                 "tasks:upscale": 2})
    assert clean == {"audio_in_seconds": Decimal("1.235"), "tasks:upscale": 2}
