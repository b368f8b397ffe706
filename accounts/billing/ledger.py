"""The one writer of the usage ledger (accounts.models.UsageRecord) and of the monthly spend behind
budgets (MonthlySpend). Nothing else inserts into either table.

Usage arrives as UsageBatch objects: what one meter (one session) counted since its previous batch,
numbered per meter (``seq``). A batch row's idempotency key is ``<session>:<meter>:<seq>:<metric>``,
so a batch written again (a retry after a write whose outcome was unknown, a spool replayed after a
restart) is counted once: ``ledger_write`` inserts only rows whose key is not in the ledger yet, and
adds to the monthly spend exactly the cost of the rows it inserted, in the same transaction.

Amounts are checked here once more whatever the caller checked (``usage_amounts_clean``): a metric
of the catalogue (accounts.billing.metrics), a finite non-negative quantity under a bound. Anything
else is dropped and logged, so no input can lower a spend or overflow a column.

Pricing happens at the first write attempt (``usage_batch_price``), carrying per session and metric
the cost below one micro-unit (accounts.billing.prices); a retried batch keeps the prices and costs it
was first given.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.db import IntegrityError, transaction
from django.db.models import F

from accounts.billing.metrics import METRICS_SECONDS, metric_is_valid
from accounts.billing.prices import Charge, charges_compute

logger = logging.getLogger(__name__)

MILLI = Decimal("0.001")
# No batch of one session's few seconds comes near this; it keeps every cost and sum far inside a
# 64-bit column (UsageRecord.quantity holds 17 integer digits).
MAX_QUANTITY = Decimal(10) ** 12
# Rows per query when checking which idempotency keys the ledger has already.
CHUNK = 1000


@dataclass(frozen=True)
class KeyRef:
    """Who pays for a batch: the ApiKey row, its stable key id, project and environment."""

    api_key_pk: str
    key_id: str
    project_id: int
    environment_id: int

    @classmethod
    def of(cls, key) -> KeyRef:
        """From anything with ``pk``, ``key_id``, ``project_id`` and ``environment_id`` (a verified key,
        a gateway ConnectionAuth)."""
        return cls(api_key_pk=str(key.pk), key_id=key.key_id, project_id=int(key.project_id),
                   environment_id=int(key.environment_id))


@dataclass
class UsageBatch:
    """What one meter counted since its previous batch. ``charges`` is set when it is first priced."""

    key: KeyRef
    session_id: str
    meter_id: str
    dialect: str
    seq: int
    amounts: dict[str, Decimal]
    occurred_at: dt.datetime
    final: bool = False  # the meter's last batch: its session's carried remainders can go
    charges: dict[str, Charge] | None = field(default=None)

    def idempotency_key(self, metric: str) -> str:
        return f"{self.session_id}:{self.meter_id}:{self.seq}:{metric}"

    # A spool (accounts.billing.spool) keeps batches as JSON lines.
    def to_json(self) -> dict:
        return {
            "key": [self.key.api_key_pk, self.key.key_id, self.key.project_id, self.key.environment_id],
            "session_id": self.session_id, "meter_id": self.meter_id, "dialect": self.dialect, "seq": self.seq,
            "amounts": {metric: str(quantity) for metric, quantity in self.amounts.items()},
            "occurred_at": self.occurred_at.isoformat(), "final": self.final,
            "charges": None if self.charges is None else {
                metric: [c.unit_price_micros, c.cost_micros, c.remainder] for metric, c in self.charges.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> UsageBatch:
        pk, key_id, project_id, environment_id = data["key"]
        charges = data.get("charges")
        return cls(
            key=KeyRef(api_key_pk=str(pk), key_id=str(key_id), project_id=int(project_id),
                       environment_id=int(environment_id)),
            session_id=str(data["session_id"]), meter_id=str(data["meter_id"]), dialect=str(data["dialect"]),
            seq=int(data["seq"]), amounts=usage_amounts_clean(data["amounts"], context=str(data["session_id"])),
            occurred_at=dt.datetime.fromisoformat(data["occurred_at"]), final=bool(data.get("final")),
            charges=None if charges is None else {
                metric: Charge(unit_price_micros=int(p), cost_micros=int(c), remainder=int(r))
                for metric, (p, c, r) in charges.items()},
        )


def quantity_quantize(metric: str, quantity: Decimal) -> Decimal:
    """Seconds to the millisecond (the ledger's precision); counts are whole already."""
    return quantity.quantize(MILLI, rounding=ROUND_HALF_UP) if metric in METRICS_SECONDS else quantity


def usage_amounts_clean(amounts: Mapping, *, context: str = "") -> dict[str, Decimal]:
    """The amounts the ledger may hold: catalogue metrics with finite quantities in (0, MAX_QUANTITY].
    Anything else is logged (metric name and type only: never a value that could carry a secret) and
    dropped."""
    clean: dict[str, Decimal] = {}
    for metric, quantity in amounts.items():
        if not isinstance(metric, str) or not metric_is_valid(metric):
            logger.warning("usage of %s dropped: %r is not a metric of the catalogue", context,
                           metric[:60] if isinstance(metric, str) else type(metric).__name__)
            continue
        try:
            value = quantity if isinstance(quantity, Decimal) else Decimal(
                quantity if isinstance(quantity, (int, str)) and not isinstance(quantity, bool) else "NaN")
            ok = value.is_finite() and Decimal(0) <= value <= MAX_QUANTITY
        except (InvalidOperation, ValueError):
            ok = False
        if not ok:
            logger.warning("usage of %s dropped: %s is not a quantity in 0..%s (%s)", context, metric, MAX_QUANTITY,
                           type(quantity).__name__)
            continue
        value = quantity_quantize(metric, value)
        if value:
            clean[metric] = value
    return clean


def usage_batch_price(batch: UsageBatch, *, remainders: dict[str, int]) -> None:
    """Price ``batch`` at its project's current prices, once (a retry keeps the first prices); then
    carry each metric's remainder in ``remainders`` (that session's carry, updated in place)."""
    if batch.charges is None:
        batch.charges = charges_compute(project_id=batch.key.project_id, amounts=batch.amounts,
                                        remainders=remainders)
    remainders.update({metric: charge.remainder for metric, charge in batch.charges.items()})


def monthly_spend_add(*, project_id: int, key_id: str, month: dt.date, cost_micros: int) -> None:
    """Add inserted ledger rows' cost to their key's month. Only called in the transaction that
    inserted them (and so never with a negative cost)."""
    from accounts.models import MonthlySpend

    if cost_micros <= 0:
        return
    spend = MonthlySpend.objects.filter(project_id=project_id, key_id=key_id, month=month)
    if spend.update(cost_micros=F("cost_micros") + cost_micros):
        return
    try:
        with transaction.atomic():
            MonthlySpend.objects.create(project_id=project_id, key_id=key_id, month=month, cost_micros=cost_micros)
    except IntegrityError:  # another write made the row in between
        spend.update(cost_micros=F("cost_micros") + cost_micros)


# The ledger's columns in the order ``_row_values`` gives them.
COLUMNS = ("api_key", "key_id", "project", "environment", "session_id", "dialect", "metric", "quantity",
           "unit_price_micros", "cost_micros", "occurred_at", "idempotency_key")


def _row_values(batch: UsageBatch) -> list[tuple]:
    assert batch.charges is not None
    key = batch.key
    return [
        (key.api_key_pk, key.key_id, key.project_id, key.environment_id, batch.session_id, batch.dialect, metric,
         quantity, batch.charges[metric].unit_price_micros, max(0, batch.charges[metric].cost_micros),
         batch.occurred_at, batch.idempotency_key(metric))
        for metric, quantity in batch.amounts.items()
    ]


def ledger_write(*, batches: Iterable[UsageBatch]) -> int:
    """Write priced batches in one transaction: the rows the ledger does not hold yet, and their cost
    to the monthly spend. Returns the number of rows inserted (0 when all were there already)."""
    from django.db import connection

    rows = [row for batch in batches for row in _row_values(batch)]
    if not rows:
        return 0
    with transaction.atomic():
        insert = _insert_new_postgresql if connection.vendor == "postgresql" else _insert_new_portable
        inserted = 0
        for project_id, key_id, month, cost, count in sorted(insert(rows)):  # one order: no deadlock between writers
            monthly_spend_add(project_id=project_id, key_id=key_id, month=month, cost_micros=int(cost))
            inserted += int(count)
    return inserted


# What the inserts return: per key and month (UTC) of the rows inserted, their cost and their number.
Inserted = tuple[int, str, dt.date, int, int]


def _insert_new_postgresql(rows: list[tuple]) -> list[Inserted]:
    """One statement for the whole write (project.bulk), inserting only the keys the ledger does not
    hold (ON CONFLICT DO NOTHING, which also waits out a concurrent writer of the same key). RETURNING
    names exactly the rows this statement inserted, so the spend added is exactly theirs; they are
    summed in the same statement (a few rows back rather than one per row)."""
    from accounts.models import UsageRecord
    from project.bulk import rows_insert_postgresql

    return rows_insert_postgresql(
        model=UsageRecord, fields=COLUMNS, rows=rows, conflict="idempotency_key",
        returning=("project", "key_id", "occurred_at", "cost_micros"),
        then="SELECT project_id, key_id, date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date, "
             "sum(cost_micros)::bigint, count(*) FROM inserted GROUP BY 1, 2, 3")


def _insert_new_portable(rows: list[tuple]) -> list[Inserted]:
    """Any other database (SQLite, the embedded default): look up which keys the ledger holds, insert
    the others. If another writer raced this one to a key, the transaction fails whole and is retried,
    when the look-up sees that key."""
    from accounts.models import UsageRecord

    records = [UsageRecord(**{("api_key_id" if name == "api_key" else f"{name}_id" if name in ("project", "environment")
                                else name): value for name, value in zip(COLUMNS, row, strict=True)})
               for row in rows]
    keys = [record.idempotency_key for record in records]
    existing: set[str] = set()
    for start in range(0, len(keys), CHUNK):
        existing.update(UsageRecord.objects.filter(idempotency_key__in=keys[start:start + CHUNK])
                        .values_list("idempotency_key", flat=True))
    new = [record for record in records if record.idempotency_key not in existing]
    UsageRecord.objects.bulk_create(new, batch_size=CHUNK)
    sums: dict[tuple[int, str, dt.date], list[int]] = {}
    for record in new:
        month = record.occurred_at.astimezone(dt.UTC).date().replace(day=1)
        total = sums.setdefault((record.project_id, record.key_id, month), [0, 0])
        total[0] += record.cost_micros
        total[1] += 1
    return [(project_id, key_id, month, cost, count) for (project_id, key_id, month), (cost, count) in sums.items()]
