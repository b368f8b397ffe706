"""Reads of the usage ledger for reports: the dashboard, the per-key page, CSV, statements and REST.

Everything is rolled up from one aggregate query (``usage_lines``): per UTC day, environment, key,
metric and unit price, the summed quantity and cost. Charts, tables, CSV and API answers are sums of
the same lines, so they always agree with each other and with the ledger.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Sum
from django.db.models.functions import TruncDate, TruncMonth

from accounts.billing.metrics import metric_sort_key
from accounts.exceptions import InvalidInput
from accounts.models import ApiKey, Project, UsageRecord
from accounts.selectors import api_key_status

UTC = dt.UTC
MAX_RANGE_DAYS = 366
GROUPS = ("day", "key", "environment", "metric")


@dataclass(frozen=True)
class UsageLine:
    day: dt.date
    environment: str
    key_id: str
    metric: str
    unit_price_micros: int
    quantity: Decimal
    cost_micros: int


@dataclass(frozen=True)
class KeyLabel:
    key_id: str
    name: str
    environment: str
    masked: str
    status: str


def today() -> dt.date:
    return dt.datetime.now(UTC).date()


def month_first(day: dt.date) -> dt.date:
    return day.replace(day=1)


def month_next(month: dt.date) -> dt.date:
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def month_last(month: dt.date) -> dt.date:
    return month_next(month) - dt.timedelta(days=1)


def day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=UTC)


def _parse_day(value: str, field: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidInput("invalid_date", f"{field} must be a date as YYYY-MM-DD.", field=field) from None


def usage_period_parse(*, start: str | None, end: str | None) -> tuple[dt.date, dt.date]:
    """An inclusive range of UTC days from ``from`` / ``to`` parameters (defaults: this month so far)."""
    start_day = _parse_day(start, "from") if start else month_first(today())
    end_day = _parse_day(end, "to") if end else max(today(), start_day)
    if start_day > end_day:
        raise InvalidInput("invalid_range", "from must not be after to.", field="from")
    if (end_day - start_day).days + 1 > MAX_RANGE_DAYS:
        raise InvalidInput("range_too_long", f"A range is at most {MAX_RANGE_DAYS} days.", field="to")
    return start_day, end_day


def usage_month_parse(value: str) -> dt.date:
    try:
        return dt.datetime.strptime(value, "%Y-%m").date()
    except ValueError:
        raise InvalidInput("invalid_month", "The month must be YYYY-MM.", field="month") from None


def usage_lines(*, project_id: int, start: dt.date, end: dt.date, environment: str | None = None,
                key_id: str | None = None) -> list[UsageLine]:
    """The ledger of the project over the inclusive UTC days ``start``..``end``, summed per day,
    environment, key, metric and unit price."""
    rows = UsageRecord.objects.filter(project_id=project_id, occurred_at__gte=day_start(start),
                                      occurred_at__lt=day_start(end + dt.timedelta(days=1)))
    if environment is not None:
        rows = rows.filter(environment__kind=environment)
    if key_id is not None:
        rows = rows.filter(key_id=key_id)
    fields = ("day", "environment__kind", "key_id", "metric", "unit_price_micros")
    totals = (rows.annotate(day=TruncDate("occurred_at", tzinfo=UTC)).values(*fields)
              .annotate(quantity=Sum("quantity"), cost=Sum("cost_micros")).order_by(*fields))
    return [
        UsageLine(day=row["day"], environment=row["environment__kind"], key_id=row["key_id"], metric=row["metric"],
                  unit_price_micros=row["unit_price_micros"], quantity=row["quantity"], cost_micros=int(row["cost"]))
        for row in totals
    ]


@dataclass
class UsageGroup:
    """One group of a roll-up: quantity per metric and total cost."""

    value: object
    quantities: dict[str, Decimal]
    cost_micros: int = 0

    def add(self, line: UsageLine) -> None:
        self.quantities[line.metric] = self.quantities.get(line.metric, Decimal(0)) + line.quantity
        self.cost_micros += line.cost_micros


def _group_value(line: UsageLine, group_by: str):
    return {"day": line.day, "key": line.key_id, "environment": line.environment, "metric": line.metric}[group_by]


def usage_rollup(lines: Iterable[UsageLine], *, group_by: str) -> list[UsageGroup]:
    """Lines grouped by ``day``, ``key``, ``environment`` or ``metric``, in that value's order."""
    groups: dict[object, UsageGroup] = {}
    for line in lines:
        value = _group_value(line, group_by)
        group = groups.get(value)
        if group is None:
            group = groups[value] = UsageGroup(value=value, quantities={})
        group.add(line)
    if group_by == "metric":
        return [groups[value] for value in sorted(groups, key=lambda value: metric_sort_key(str(value)))]
    return [groups[value] for value in sorted(groups, key=str)]


def usage_key_labels(*, project: Project) -> dict[str, KeyLabel]:
    """Each key id of the project (stable across rotation) with its newest key's name and state."""
    labels = {}
    for key in ApiKey.objects.filter(project=project).select_related("environment").order_by("created_at", "pk"):
        labels[key.key_id] = KeyLabel(key_id=key.key_id, name=key.name, environment=key.environment.kind,
                                      masked=key.masked, status=api_key_status(api_key=key))
    return labels


def usage_months(*, project_id: int) -> list[dt.date]:
    """First days of the months (UTC) with any usage, newest first."""
    months = (UsageRecord.objects.filter(project_id=project_id)
              .annotate(month=TruncMonth("occurred_at", tzinfo=UTC)).values_list("month", flat=True).distinct())
    return sorted({(m.date() if isinstance(m, dt.datetime) else m) for m in months}, reverse=True)


def usage_days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]
