"""Monthly budgets: an optional spend limit per project and per key (its stable key id), over the
calendar month in UTC. At the limit the gateway refuses new sessions and closes live ones
(realtime.gateway.budgets); here are the rules and the spend they are checked against.

Spend is read often (every connection and, per live session, every BILLING_SPEND_CACHE_SECONDS). It
comes from MonthlySpend, a per-key monthly total that every ledger write adds to in its own
transaction (accounts.billing.ledger, its only writer), so reading it is a few rows however big the month's ledger. On top
of that each process keeps a project's budget state for BILLING_SPEND_CACHE_SECONDS: a check costs no
query while that copy is fresh, and a project with no budget never reads spend at all. The spend a
check sees is therefore up to BILLING_SPEND_CACHE_SECONDS + REALTIME_METER_FLUSH_SECONDS behind the usage.
A budget changed here applies at once in this process and within BILLING_SPEND_CACHE_SECONDS in others.
"""
from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from accounts.billing.usage import month_first, today
from accounts.exceptions import InvalidInput, NotAllowed
from accounts.models import ApiKey, Budget, EnvironmentKind, Membership, MonthlySpend, Project
from accounts.selectors import MANAGER_ROLES

MAX_LIMIT_MICROS = 10**15


@dataclass(frozen=True)
class BudgetState:
    """A project's limits and month-to-date spend, as of ``checked_at`` (monotonic seconds)."""

    month: dt.date
    project_limit: int | None
    key_limits: dict[str, int]
    project_spent: int
    key_spent: dict[str, int]
    checked_at: float

    def exceeded(self, key_id: str) -> str | None:
        """"key" or "project" when that budget is spent (spend at or over the limit), else None."""
        limit = self.key_limits.get(key_id)
        if limit is not None and self.key_spent.get(key_id, 0) >= limit:
            return "key"
        if self.project_limit is not None and self.project_spent >= self.project_limit:
            return "project"
        return None


def _month_spend(*, project_id: int, month: dt.date) -> dict[str, int]:
    return dict(MonthlySpend.objects.filter(project_id=project_id, month=month).values_list("key_id", "cost_micros"))


def budget_state_load(*, project_id: int) -> BudgetState:
    month = month_first(today())
    limits = dict(Budget.objects.filter(project_id=project_id).values_list("key_id", "monthly_limit_micros"))
    project_limit = limits.pop("", None)
    spent = _month_spend(project_id=project_id, month=month) if (limits or project_limit is not None) else {}
    state = BudgetState(month=month, project_limit=project_limit, key_limits=limits,
                        project_spent=sum(spent.values()), key_spent=spent, checked_at=time.monotonic())
    if limits or project_limit is not None:
        from accounts.billing.alerts import budget_alerts_send  # 50/80/100% emails, once a month each

        budget_alerts_send(project_id=project_id, state=state)
    return state


class _BudgetCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, BudgetState] = {}

    def peek(self, project_id: int) -> BudgetState | None:
        with self._lock:
            state = self._entries.get(project_id)
        if state is None or time.monotonic() - state.checked_at >= settings.BILLING_SPEND_CACHE_SECONDS:
            return None
        if state.month != month_first(today()):
            return None  # a new month: spend starts again
        return state

    def put(self, project_id: int, state: BudgetState) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[project_id] = state

    def invalidate(self, project_id: int) -> None:
        with self._lock:
            self._entries.pop(project_id, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


budget_cache = _BudgetCache()


def budget_state_peek(*, project_id: int) -> BudgetState | None:
    """This process's fresh copy, or None (then ``budget_state_get`` must load it: a query)."""
    return budget_cache.peek(project_id)


def budget_state_get(*, project_id: int) -> BudgetState:
    state = budget_cache.peek(project_id)
    if state is None:
        state = budget_state_load(project_id=project_id)
        budget_cache.put(project_id, state)
    return state


# --- Reads for the portal and the API -------------------------------------------------------------

@dataclass(frozen=True)
class BudgetLine:
    key_id: str  # "" for the project
    name: str
    environment: str
    limit_micros: int | None
    spent_micros: int

    @property
    def percent(self) -> int | None:
        if self.limit_micros is None:
            return None
        if self.limit_micros == 0:
            return 100
        return min(999, self.spent_micros * 100 // self.limit_micros)

    @property
    def exceeded(self) -> bool:
        return self.limit_micros is not None and self.spent_micros >= self.limit_micros


@dataclass(frozen=True)
class BudgetOverview:
    month: dt.date
    project: BudgetLine
    keys: list[BudgetLine]


def budget_overview(*, project: Project) -> BudgetOverview:
    """Limits and this month's spend (not cached) for the project and each of its keys."""
    from accounts.billing.usage import usage_key_labels

    month = month_first(today())
    limits = dict(Budget.objects.filter(project=project).values_list("key_id", "monthly_limit_micros"))
    spent = _month_spend(project_id=project.pk, month=month)
    labels = usage_key_labels(project=project)
    keys = [BudgetLine(key_id=key_id, name=label.name, environment=label.environment, limit_micros=limits.get(key_id),
                       spent_micros=spent.get(key_id, 0))
            for key_id, label in sorted(labels.items(), key=lambda item: (
                EnvironmentKind.values.index(item[1].environment), item[1].name.lower()))]
    return BudgetOverview(
        month=month,
        project=BudgetLine(key_id="", name=project.name, environment="", limit_micros=limits.get(""),
                           spent_micros=sum(spent.values())),
        keys=keys,
    )


# --- Writes ---------------------------------------------------------------------------------------

@transaction.atomic
def budget_set(*, by: Membership, key_id: str | None, monthly_limit_micros: int | None) -> Budget | None:
    """Set (or with None remove) the monthly limit of the project (``key_id`` None) or of one of its
    keys. Owners and admins only."""
    if by.role not in MANAGER_ROLES:
        raise NotAllowed("forbidden", f"Your role ({by.role}) does not allow you to change budgets.")
    project = by.project
    if key_id is not None and not ApiKey.objects.filter(project=project, key_id=key_id).exists():
        raise InvalidInput("unknown_key", "This project has no key with that key id.", field="key_id")
    if monthly_limit_micros is not None and not (
            isinstance(monthly_limit_micros, int) and 0 <= monthly_limit_micros <= MAX_LIMIT_MICROS):
        raise InvalidInput("invalid_limit", "The monthly limit must be a whole number of micro-units, "
                           f"0 to {MAX_LIMIT_MICROS}.", field="monthly_limit_micros")
    transaction.on_commit(lambda: budget_cache.invalidate(project.pk))
    if monthly_limit_micros is None:
        Budget.objects.filter(project=project, key_id=key_id or "").delete()
        return None
    budget, _created = Budget.objects.update_or_create(
        project=project, key_id=key_id or "", defaults={"monthly_limit_micros": monthly_limit_micros})
    return budget
