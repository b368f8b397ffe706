"""The monthly statement of a project: a line per key, metric and unit price, with subtotals per key
and the total, from the same ledger lines as every other report."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from accounts.billing.metrics import metric_label, metric_sort_key, metric_unit
from accounts.billing.usage import month_last, today, usage_key_labels, usage_lines
from accounts.models import EnvironmentKind, Project


@dataclass
class StatementLine:
    metric: str
    label: str
    unit: str
    unit_price_micros: int
    quantity: Decimal = Decimal(0)
    cost_micros: int = 0


@dataclass
class StatementKey:
    key_id: str
    name: str
    environment: str
    masked: str
    lines: list[StatementLine] = field(default_factory=list)

    @property
    def subtotal_micros(self) -> int:
        return sum(line.cost_micros for line in self.lines)


@dataclass
class Statement:
    project: Project
    month: dt.date
    start: dt.date
    end: dt.date
    complete: bool  # False while the month is still running
    keys: list[StatementKey]

    @property
    def total_micros(self) -> int:
        return sum(key.subtotal_micros for key in self.keys)


def statement_get(*, project: Project, month: dt.date) -> Statement:
    start, end = month, month_last(month)
    labels = usage_key_labels(project=project)
    keys: dict[str, StatementKey] = {}
    lines: dict[tuple, StatementLine] = {}
    for usage in usage_lines(project_id=project.pk, start=start, end=end):
        key = keys.get(usage.key_id)
        if key is None:
            label = labels.get(usage.key_id)
            key = keys[usage.key_id] = StatementKey(
                key_id=usage.key_id, name=label.name if label else usage.key_id,
                environment=label.environment if label else usage.environment, masked=label.masked if label else "")
        line = lines.get((usage.key_id, usage.metric, usage.unit_price_micros))
        if line is None:
            line = lines[(usage.key_id, usage.metric, usage.unit_price_micros)] = StatementLine(
                metric=usage.metric, label=metric_label(usage.metric), unit=metric_unit(usage.metric),
                unit_price_micros=usage.unit_price_micros)
            key.lines.append(line)
        line.quantity += usage.quantity
        line.cost_micros += usage.cost_micros
    for key in keys.values():
        key.lines.sort(key=lambda line: (metric_sort_key(line.metric), line.unit_price_micros))
    environments = EnvironmentKind.values
    ordered = sorted(keys.values(), key=lambda key: (
        environments.index(key.environment) if key.environment in environments else len(environments), key.name.lower()))
    return Statement(project=project, month=month, start=start, end=end, complete=end < today(), keys=ordered)
