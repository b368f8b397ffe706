"""What the usage pages show, built from accounts.billing.usage lines: a day-by-day series for the
chart and its data table, and totals by metric, key and environment."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from accounts.billing.chart import Series, series_colored
from accounts.billing.metrics import metric_label, metric_sort_key
from accounts.billing.usage import KeyLabel, UsageLine, usage_days, usage_rollup
from accounts.models import EnvironmentKind

BREAKDOWNS = {"environment": "Environment", "key": "Key", "metric": "Metric"}
COST = "cost"


@dataclass
class ReportRow:
    """One row of a totals table."""

    key: str
    label: str
    cost_micros: int = 0
    quantities: dict[str, Decimal] = field(default_factory=dict)
    detail: object = None  # a KeyLabel for key rows


@dataclass
class UsageReport:
    start: dt.date
    end: dt.date
    breakdown: str
    measure: str  # "cost" or a metric
    days: list[dt.date]
    series: list[Series]
    day_totals: list[int]
    total_cost_micros: int
    by_metric: list[ReportRow]
    by_key: list[ReportRow]
    by_environment: list[ReportRow]
    metrics: list[str]  # metrics present, in display order


def _value(line: UsageLine, measure: str) -> int:
    if measure == COST:
        return line.cost_micros
    return int(line.quantity * 1000) if line.metric == measure else 0


def _series_label(breakdown: str, value: str, keys: dict[str, KeyLabel]) -> str:
    if breakdown == "metric":
        return metric_label(value)
    if breakdown == "key":
        label = keys.get(value)
        return f"{label.name} ({label.environment})" if label else value
    return dict(EnvironmentKind.choices).get(value, value)


def _environment_order(kind: str) -> int:
    return EnvironmentKind.values.index(kind) if kind in EnvironmentKind.values else len(EnvironmentKind.values)


def _order(breakdown: str, value: str, keys: dict[str, KeyLabel]):
    if breakdown == "metric":
        return metric_sort_key(value)
    if breakdown == "environment":
        return _environment_order(value)
    return _series_label("key", value, keys).lower()


def _rows(lines: list[UsageLine], group_by: str, keys: dict[str, KeyLabel]) -> list[ReportRow]:
    rows = []
    for group in usage_rollup(lines, group_by=group_by):
        rows.append(ReportRow(key=str(group.value), label=_series_label(group_by, str(group.value), keys),
                              cost_micros=group.cost_micros, quantities=group.quantities,
                              detail=keys.get(str(group.value)) if group_by == "key" else None))
    return rows


def usage_report(*, lines: list[UsageLine], start: dt.date, end: dt.date, breakdown: str, measure: str,
                 keys: dict[str, KeyLabel]) -> UsageReport:
    days = usage_days(start, end)
    index = {day: n for n, day in enumerate(days)}
    attribute = {"environment": "environment", "key": "key_id", "metric": "metric"}[breakdown]
    values: dict[str, list[int]] = {}
    for line in lines:
        value = _value(line, measure)
        if value:
            values.setdefault(getattr(line, attribute), [0] * len(days))[index[line.day]] += value
    series = series_colored([Series(key, _series_label(breakdown, key, keys), values[key])
                             for key in sorted(values, key=lambda value: _order(breakdown, value, keys))])
    by_metric = _rows(lines, "metric", keys)
    return UsageReport(
        start=start, end=end, breakdown=breakdown, measure=measure, days=days, series=series,
        day_totals=[sum(s.values[n] for s in series) for n in range(len(days))],
        total_cost_micros=sum(line.cost_micros for line in lines),
        by_metric=by_metric,
        by_key=sorted(_rows(lines, "key", keys), key=lambda row: -row.cost_micros),
        by_environment=sorted(_rows(lines, "environment", keys), key=lambda row: _environment_order(row.key)),
        metrics=[row.key for row in by_metric],
    )
