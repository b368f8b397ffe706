"""The catalogue of metrics the ledger records, with the unit and label each is shown with."""
from __future__ import annotations

import re

TASKS_PREFIX = "tasks:"
TASKS_WILDCARD = "tasks:*"
TASK_METRIC = re.compile(r"^tasks:[A-Za-z0-9_]{1,50}$")

# Fixed metrics in display order: (label, unit).
METRICS = {
    "session_seconds": ("Session time", "seconds"),
    "audio_in_seconds": ("Audio in", "seconds"),
    "audio_out_seconds": ("Audio out", "seconds"),
    "text_in_tokens": ("Text tokens in", "tokens"),
    "text_out_tokens": ("Text tokens out", "tokens"),
    "messages": ("Messages", "messages"),
}
# Metrics in seconds: the ledger keeps them to the millisecond; the others are whole counts.
METRICS_SECONDS = frozenset({"session_seconds", "audio_in_seconds", "audio_out_seconds"})


def metric_is_valid(metric: str) -> bool:
    """A metric the ledger can hold (and so one that can be priced): a fixed one or tasks:<taskType>."""
    return metric in METRICS or bool(TASK_METRIC.match(metric))


def metric_unit(metric: str) -> str:
    if metric.startswith(TASKS_PREFIX):
        return "tasks"
    return METRICS.get(metric, (metric, "units"))[1]


def metric_unit_singular(metric: str) -> str:
    """"second", "token", "message", "task": what one unit of a price is for."""
    return {"seconds": "second", "tokens": "token", "messages": "message", "tasks": "task"}.get(
        metric_unit(metric), "unit")


def metric_label(metric: str) -> str:
    if metric == TASKS_WILDCARD:
        return "Tasks (any type)"
    if metric.startswith(TASKS_PREFIX):
        return f"Tasks: {metric[len(TASKS_PREFIX):]}"
    return METRICS.get(metric, (metric, ""))[0]


def metric_sort_key(metric: str) -> tuple:
    """Fixed metrics in their order, then task types alphabetically."""
    order = list(METRICS)
    return (order.index(metric), "") if metric in METRICS else (len(order), metric)


def quantity_text(quantity, metric: str) -> str:
    """"12.345 s", "1,200 tokens", "3 tasks": exact, with thousands separators."""
    from decimal import Decimal

    value = Decimal(quantity).normalize() if quantity else Decimal(0)
    if value == value.to_integral_value():
        value = value.quantize(Decimal(1))
    unit = metric_unit(metric) if value != 1 else metric_unit_singular(metric)
    short = {"seconds": "s", "second": "s"}.get(unit, unit)
    return f"{value:,f} {short}"
