"""Monthly budgets at the gateway, for every dialect: ``budget_refusal`` when a connection
authenticates (realtime.auth), ``budget_watch`` for the life of a session.

A key or project whose monthly budget is spent (accounts.billing.budgets) cannot open new sessions:
``budget_exceeded``, close code 4402. A live session finds out within BILLING_SPEND_CACHE_SECONDS:
it gets a warning ``budget_exceeded`` error (the connection stays), and REALTIME_BUDGET_GRACE_SECONDS
later, if the budget is still spent, the same error again and a close with 4402.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async
from django.conf import settings

from accounts.billing.budgets import budget_state_get, budget_state_peek
from realtime.limits import CLOSE_BUDGET_EXCEEDED, GatewayError

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


async def budget_watch(*, auth, warn: Callable[[GatewayError], Awaitable[None]],
                       close: Callable[[GatewayError], Awaitable[None]]) -> None:
    """Run for a live session (as a named task): re-check every BILLING_SPEND_CACHE_SECONDS; when the
    budget is spent, ``warn``, wait the grace period, and ``close`` if it is still spent."""
    while True:
        await asyncio.sleep(settings.BILLING_SPEND_CACHE_SECONDS)
        try:
            scope = await budget_scope_exceeded(auth=auth)
        except Exception:  # the database may be briefly away: keep the session, check again
            logger.exception("budget check failed for key %s", auth.key_id)
            continue
        if scope is None:
            continue
        await warn(budget_warning(scope))
        await asyncio.sleep(settings.REALTIME_BUDGET_GRACE_SECONDS)
        try:
            scope = await budget_scope_exceeded(auth=auth)
        except Exception:
            logger.exception("budget check failed for key %s", auth.key_id)
        if scope is not None:  # None: the budget was raised during the grace period
            await close(budget_error(scope))
            return
