"""Shared pieces of the billing tests (no tests here): ledger rows written as the meter writes them,
and price lists set for a test."""
from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from accounts.billing.ledger import monthly_spend_add
from accounts.billing.prices import price_cache
from accounts.models import Price, UsageRecord


@transaction.atomic
def ledger_row(api_key, metric: str, quantity, *, unit_price: int = 0, cost: int | None = None,
               occurred_at: dt.datetime | None = None, session_id: str = "sess_test", dialect: str = "realtime"):
    """One ledger row for ``api_key`` (an ApiKey), as SessionMeter writes it (its month's spend too)."""
    quantity = Decimal(quantity)
    occurred_at = occurred_at or timezone.now()
    cost = int(quantity * unit_price) if cost is None else cost
    monthly_spend_add(project_id=api_key.project_id, key_id=api_key.key_id, month=occurred_at.date().replace(day=1),
                      cost_micros=cost)
    return UsageRecord.objects.create(
        api_key=api_key, key_id=api_key.key_id, project_id=api_key.project_id, environment_id=api_key.environment_id,
        session_id=session_id, dialect=dialect, metric=metric, quantity=quantity, unit_price_micros=unit_price,
        cost_micros=cost, occurred_at=occurred_at, idempotency_key=f"{session_id}:{uuid.uuid4().hex}:{metric}",
    )


def prices_set(prices: dict[str, int], *, project=None) -> None:
    """Replace the default price list (``project`` None) or a project's overrides."""
    Price.objects.filter(project=project).delete()
    Price.objects.bulk_create([Price(metric=metric, project=project, unit_price_micros=price)
                               for metric, price in prices.items()])
    price_cache.clear()
