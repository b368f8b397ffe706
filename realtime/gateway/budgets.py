"""Monthly budgets at the gateway, for every dialect: ``budget_refusal`` when a connection
authenticates (realtime.gateway.auth), ``BudgetGuard`` (or ``budget_watch``) for the life of a session.

A key or project whose monthly budget is spent (accounts.billing.budgets) cannot open new sessions:
``budget_exceeded``, close code 4402. A live session finds out within BILLING_SPEND_CACHE_SECONDS:
it gets a warning ``budget_exceeded`` error (the connection stays), and REALTIME_BUDGET_GRACE_SECONDS
later, if the budget is still spent, the same error again and a close with 4402.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async
from django.conf import settings

from accounts.billing.budgets import budget_state_get, budget_state_peek
from realtime.gateway.limits import CLOSE_BUDGET_EXCEEDED, GatewayError

logger = logging.getLogger(__name__)

BUDGET_EXCEEDED = "budget_exceeded"
_WHOSE = {"key": "this API key", "project": "this project"}


def _spent(scope: str) -> str:
    return f"The monthly budget of {_WHOSE[scope]} is spent"


def budget_error(scope: str) -> GatewayError:
    """The refusal (and the final close) when ``scope`` ("key" or "project") is over budget."""
    return GatewayError(BUDGET_EXCEEDED, f"{_spent(scope)}; new sessions are refused until it is raised or "
                        "the month ends.", CLOSE_BUDGET_EXCEEDED)


def budget_warning(scope: str) -> GatewayError:
    """Told to a live session first; the connection stays open for the grace period."""
    return GatewayError(BUDGET_EXCEEDED, f"{_spent(scope)}; this session will be closed in "
                        f"{settings.REALTIME_BUDGET_GRACE_SECONDS:g} seconds.")


async def budget_scope_exceeded(*, auth) -> str | None:
    """"key" or "project" when that monthly budget is spent. No query while this process's copy of
    the project's budget state is fresh (see accounts.billing.budgets)."""
    state = budget_state_peek(project_id=auth.project_id)
    if state is None:
        state = await database_sync_to_async(budget_state_get)(project_id=auth.project_id)
    return state.exceeded(auth.key_id)


async def budget_refusal(*, auth) -> GatewayError | None:
    scope = await budget_scope_exceeded(auth=auth)
    return budget_error(scope) if scope else None


class BudgetGuard:
    """The budget rule for one live session, stepped by the session's lifecycle (from the process clock)
    or by ``budget_watch``: every BILLING_SPEND_CACHE_SECONDS, look; when the budget is spent,
    ``warn``; REALTIME_BUDGET_GRACE_SECONDS later, ``close`` if it is still spent."""

    __slots__ = ("auth", "due", "warned")

    def __init__(self, *, auth):
        self.auth = auth
        self.due = time.monotonic() + settings.BILLING_SPEND_CACHE_SECONDS
        self.warned = False

    async def _scope(self) -> str | None:
        try:
            return await budget_scope_exceeded(auth=self.auth)
        except Exception:  # the database may be briefly away: keep the session, look again next time
            logger.exception("budget check failed for key %s", self.auth.key_id)
            return None

    def step_at_once(self, now: float) -> bool:
        """The common look, inline and without a task: True when it is done (this process's copy of the
        budget state is fresh and within budget, and no warning is pending). False: ``step`` must run."""
        if self.warned:
            return False
        state = budget_state_peek(project_id=self.auth.project_id)
        if state is None or state.exceeded(self.auth.key_id):
            return False
        self.due = now + settings.BILLING_SPEND_CACHE_SECONDS
        return True

    async def step(self, now: float, *, warn: Callable[[GatewayError], Awaitable[None]],
                   close: Callable[[GatewayError], Awaitable[None]]) -> bool:
        """Look if due; True once ``close`` was called (the session is over)."""
        if now < self.due:
            return False
        scope = await self._scope()
        if scope is None:  # within budget, or raised during the grace period
            self.warned = False
            self.due = now + settings.BILLING_SPEND_CACHE_SECONDS
            return False
        if self.warned:
            await close(budget_error(scope))
            return True
        self.warned = True
        self.due = now + settings.REALTIME_BUDGET_GRACE_SECONDS
        await warn(budget_warning(scope))
        return False


async def budget_watch(*, auth, warn: Callable[[GatewayError], Awaitable[None]],
                       close: Callable[[GatewayError], Awaitable[None]]) -> None:
    """A BudgetGuard as a task of its own, for sessions with no periodic loop (tasks, rooms)."""
    guard = BudgetGuard(auth=auth)
    while True:
        await asyncio.sleep(max(0.0, guard.due - time.monotonic()))
        if await guard.step(time.monotonic(), warn=warn, close=close):
            return
