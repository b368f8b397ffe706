"""The one metering interface every dialect reports through, written to the usage ledger idempotently.

A SessionMeter accumulates in memory (no database write per frame) and flushes at least every
REALTIME_METER_FLUSH_SECONDS (at most 5 s) and at session end. Each flush is one batch with a sequence
number; its rows carry idempotency keys ``<session>:<seq>:<metric>``, so a batch retried after a failed
or uncertain write is counted once. A batch is priced when it is first written (the project's prices,
accounts.billing.prices: never per frame), and a retry writes the same prices and costs.

Audio is metered from bytes and format, never decoded: base64 length gives bytes, and the format gives
bytes per second (PCM16 24 kHz mono = 48000 B/s, G.711 8 kHz = 8000 B/s).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.billing.budgets import monthly_spend_add
from accounts.billing.prices import Charge, charges_compute

logger = logging.getLogger(__name__)

METRICS_SECONDS = {"session_seconds", "audio_in_seconds", "audio_out_seconds"}
MILLI = Decimal("0.001")

PCM16_24K = 48000
G711_8K = 8000


def audio_bytes_per_second(audio_format) -> int:
    """Bytes per second of a realtime audio format, in either protocol generation's spelling:
    beta strings ("pcm16", "g711_ulaw", "g711_alaw") or GA objects ({"type": "audio/pcm", "rate": 24000},
    {"type": "audio/pcmu"}, {"type": "audio/pcma"})."""
    if isinstance(audio_format, dict):
        kind = audio_format.get("type", "audio/pcm")
        if kind in ("audio/pcmu", "audio/pcma"):
            return G711_8K
        rate = audio_format.get("rate") or 24000
        return int(rate) * 2 if isinstance(rate, (int, float)) and rate > 0 else PCM16_24K
    if audio_format in ("g711_ulaw", "g711_alaw", "audio/pcmu", "audio/pcma"):
        return G711_8K
    return PCM16_24K


def base64_decoded_length(text: str) -> int:
    """Bytes a base64 string decodes to, without decoding it."""
    length = len(text)
    if length == 0:
        return 0
    padding = 2 if text.endswith("==") else 1 if text.endswith("=") else 0
    return length * 3 // 4 - padding


def session_audio_formats(session: dict) -> tuple[object | None, object | None]:
    """(input format, output format) named in a session.update / session.updated ``session`` object."""
    if not isinstance(session, dict):
        return None, None
    audio = session.get("audio")
    in_fmt = out_fmt = None
    if isinstance(audio, dict):
        in_fmt = (audio.get("input") or {}).get("format") if isinstance(audio.get("input"), dict) else None
        out_fmt = (audio.get("output") or {}).get("format") if isinstance(audio.get("output"), dict) else None
    in_fmt = in_fmt or session.get("input_audio_format")
    out_fmt = out_fmt or session.get("output_audio_format")
    return in_fmt, out_fmt


def _quantize(metric: str, quantity) -> Decimal:
    value = Decimal(quantity)
    return value.quantize(MILLI, rounding=ROUND_HALF_UP) if metric in METRICS_SECONDS else value


@dataclass
class _Batch:
    seq: int
    amounts: dict[str, Decimal]
    charges: dict[str, Charge] | None = None  # priced at its first write attempt; a retry keeps them


def _ledger_write(*, key, session_id: str, dialect: str, seq: int, amounts: dict[str, Decimal],
                  charges: dict[str, Charge]) -> None:
    from accounts.models import UsageRecord

    now = timezone.now()
    rows = [
        UsageRecord(
            api_key_id=key.pk,
            key_id=key.key_id,
            project_id=key.project_id,
            environment_id=key.environment_id,
            session_id=session_id,
            dialect=dialect,
            metric=metric,
            quantity=_quantize(metric, quantity),
            unit_price_micros=charges[metric].unit_price_micros,
            cost_micros=charges[metric].cost_micros,
            occurred_at=now,
            idempotency_key=f"{session_id}:{seq}:{metric}",
        )
        for metric, quantity in amounts.items()
    ]
    with transaction.atomic():
        # A batch is written whole or not at all, so one of its keys tells whether it already was (a retry
        # after a write whose outcome was unknown): then nothing is added, to the ledger or to the spend.
        if not rows or UsageRecord.objects.filter(idempotency_key=rows[0].idempotency_key).exists():
            return
        UsageRecord.objects.bulk_create(rows, ignore_conflicts=True)
        monthly_spend_add(project_id=key.project_id, key_id=key.key_id, month=now.date().replace(day=1),
                          cost_micros=sum(row.cost_micros for row in rows))


def _batch_write(*, key, session_id: str, dialect: str, batch: _Batch, remainders: dict[str, int]) -> None:
    """Price the batch at the project's current prices (once), then write it."""
    if batch.charges is None:
        batch.charges = charges_compute(project_id=key.project_id, amounts=batch.amounts, remainders=remainders)
    _ledger_write(key=key, session_id=session_id, dialect=dialect, seq=batch.seq, amounts=batch.amounts,
                  charges=batch.charges)


class SessionMeter:
    """Per client session. ``add`` is in memory; ``flush`` writes; ``close`` writes the rest.
    ``start()`` runs the periodic flush as a named background task (cancelled and awaited by close)."""

    def __init__(self, *, key, session_id: str, dialect: str, count_session_time: bool = True):
        self.key = key
        # Off for dialects billed per message or task rather than per connected second.
        self.count_session_time = count_session_time
        self.session_id = session_id
        self.dialect = dialect
        self._pending: dict[str, Decimal] = {}
        # Audio bytes per (metric, bytes per second), exact integers: converted to seconds at flush,
        # not with a Decimal division per audio frame.
        self._audio_bytes: dict[tuple[str, int], int] = {}
        self._batch: _Batch | None = None  # being written or retried
        # Per metric, the cost below one micro-unit not yet charged (accounts.billing.prices).
        self._remainders: dict[str, int] = {}
        self._seq = 0
        self._session_mark = asyncio.get_running_loop().time()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._closed = False

    def add(self, metric: str, quantity) -> None:
        if quantity:
            self._pending[metric] = self._pending.get(metric, Decimal(0)) + Decimal(quantity)

    def add_audio(self, metric: str, b64_audio: str, bytes_per_second: int) -> None:
        key = (metric, bytes_per_second)
        self._audio_bytes[key] = self._audio_bytes.get(key, 0) + base64_decoded_length(b64_audio)

    def _audio_to_seconds(self) -> None:
        audio, self._audio_bytes = self._audio_bytes, {}
        for (metric, bytes_per_second), count in audio.items():
            self.add(metric, Decimal(count) / Decimal(bytes_per_second))

    def _account_session_time(self) -> None:
        if not self.count_session_time:
            return
        now = asyncio.get_running_loop().time()
        elapsed, self._session_mark = now - self._session_mark, now
        self.add("session_seconds", Decimal(str(round(elapsed, 6))))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"meter-flush:{self.session_id}")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(settings.REALTIME_METER_FLUSH_SECONDS)
            try:
                await self.flush()
            except Exception:  # the database may be briefly away; the batch is retried with its key
                logger.exception("usage flush failed for session %s; will retry", self.session_id)

    async def flush(self) -> None:
        async with self._lock:
            if not self._closed:
                self._account_session_time()
            self._audio_to_seconds()
            if self._batch is None:
                amounts = {metric: _quantize(metric, q) for metric, q in self._pending.items()}
                amounts = {metric: q for metric, q in amounts.items() if q}
                if not amounts:
                    return
                # Sub-millisecond remainders stay pending so rounding never loses time.
                self._pending = {m: q - amounts.get(m, Decimal(0)) for m, q in self._pending.items()}
                self._pending = {m: q for m, q in self._pending.items() if q}
                self._seq += 1
                self._batch = _Batch(seq=self._seq, amounts=amounts)
            batch = self._batch
            await database_sync_to_async(_batch_write)(
                key=self.key, session_id=self.session_id, dialect=self.dialect, batch=batch,
                remainders=self._remainders,
            )
            self._remainders.update({metric: charge.remainder for metric, charge in batch.charges.items()})
            self._batch = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._account_session_time()
        self._closed = True
        for _attempt in range(3):
            try:
                await self.flush()
                if self._batch is None and not self._pending:
                    return
            except Exception:
                logger.exception("final usage flush failed for session %s", self.session_id)
                await asyncio.sleep(0.5)
