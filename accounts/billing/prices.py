"""The price list and what a ledger row costs.

A price is integer micro-units of BILLING_CURRENCY per unit of a metric (per second, token, message
or task). Operators edit the default list in the Django admin and may give a project its own prices
(overrides). For a metric the price is, first match wins: the project's row for the metric, the
project's ``tasks:*`` (task metrics only), the default row for the metric, the default ``tasks:*``,
else 0 (free).

Rounding: a row's exact cost is quantity (3 decimals) x unit price, so it is a whole number of
thousandths of a micro-unit. The meter keeps, per session and metric, the fraction below one
micro-unit that earlier rows did not charge, adds it to the next row's exact cost and charges that
rounded down (``charge_compute``). So splitting a session into many flushes never changes what it
costs: each session and metric is charged its exact total rounded down to the micro-unit, never more.

Prices are resolved when usage is flushed (never per relayed frame), from a per-process copy of a
project's list that is at most PRICE_CACHE_SECONDS old.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from decimal import Decimal

from accounts.billing.metrics import TASKS_PREFIX, TASKS_WILDCARD

PRICE_CACHE_SECONDS = 10.0
SUB_MICROS = 1000  # thousandths of a micro-unit: the exact unit of quantity (3 decimals) x price


@dataclass(frozen=True)
class PriceList:
    """One project's effective prices: its overrides over the defaults."""

    overrides: dict[str, int]
    defaults: dict[str, int]

    def unit_price(self, metric: str) -> int:
        for table in (self.overrides, self.defaults):
            if metric in table:
                return table[metric]
            if metric.startswith(TASKS_PREFIX) and TASKS_WILDCARD in table:
                return table[TASKS_WILDCARD]
        return 0


@dataclass(frozen=True)
class Charge:
    unit_price_micros: int
    cost_micros: int
    remainder: int  # thousandths of a micro-unit carried to the session's next row of this metric


def charge_compute(*, quantity: Decimal, unit_price_micros: int, remainder: int = 0) -> Charge:
    exact = int(quantity * SUB_MICROS) * unit_price_micros + remainder
    cost, left = divmod(exact, SUB_MICROS)
    return Charge(unit_price_micros=unit_price_micros, cost_micros=cost, remainder=left)


def price_list_load(*, project_id: int) -> PriceList:
    from django.db.models import Q

    from accounts.models import Price

    overrides: dict[str, int] = {}
    defaults: dict[str, int] = {}
    rows = Price.objects.filter(Q(project_id=project_id) | Q(project__isnull=True))
    for project, metric, price in rows.values_list("project_id", "metric", "unit_price_micros"):
        (defaults if project is None else overrides)[metric] = price
    return PriceList(overrides=overrides, defaults=defaults)


class _PriceCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, tuple[float, PriceList]] = {}

    def get(self, project_id: int) -> PriceList:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(project_id)
        if entry is not None and now - entry[0] < PRICE_CACHE_SECONDS:
            return entry[1]
        prices = price_list_load(project_id=project_id)
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[project_id] = (now, prices)
        return prices

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


price_cache = _PriceCache()


def price_list_get(*, project_id: int) -> PriceList:
    """The project's effective prices, from this process's copy (at most PRICE_CACHE_SECONDS old)."""
    return price_cache.get(project_id)


def charges_compute(*, project_id: int, amounts: dict[str, Decimal], remainders: dict[str, int]) -> dict[str, Charge]:
    """What each metric of one flush costs, carrying each metric's remainder (see the module doc)."""
    prices = price_list_get(project_id=project_id)
    return {
        metric: charge_compute(quantity=quantity, unit_price_micros=prices.unit_price(metric),
                               remainder=remainders.get(metric, 0))
        for metric, quantity in amounts.items()
    }
