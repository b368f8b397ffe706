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
from project.ticks import sleep_to_tick
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
    """The budget rule for one live session. The process's budget board (below) tells it when its key
    or project is spent (``spent``, which calls ``on_spent``); its holder then runs ``step``: ``warn``,
    and REALTIME_BUDGET_GRACE_SECONDS later (``due``, on the holder's own clock) ``step`` again, which
    calls ``close`` if the budget is still spent."""

    __slots__ = ("auth", "due", "warned", "_on_spent")

    def __init__(self, *, auth, on_spent: Callable[[], None]):
        self.auth = auth
        self.due = float("inf")  # the grace period's end, once warned
        self.warned = False
        self._on_spent = on_spent

    def watch(self) -> None:
        budget_board_add(self)

    def unwatch(self) -> None:
        budget_board_discard(self)

    def spent(self) -> None:
        """The board found this session's key or project spent. Once warned, the grace period's end
        (``due``) decides instead."""
        if not self.warned:
            self._on_spent()

    async def _scope(self) -> str | None:
        try:
            return await budget_scope_exceeded(auth=self.auth)
        except Exception:  # the database may be briefly away: keep the session, look again next time
            logger.exception("budget check failed for key %s", self.auth.key_id)
            return None

    async def step(self, now: float, *, warn: Callable[[GatewayError], Awaitable[None]],
                   close: Callable[[GatewayError], Awaitable[None]]) -> bool:
        """Look now; True once ``close`` was called (the session is over)."""
        scope = await self._scope()
        if scope is None:  # within budget, or raised during the grace period
            self.warned = False
            self.due = float("inf")
            return False
        if self.warned:
            if now < self.due:
                return False
            await close(budget_error(scope))
            return True
        self.warned = True
        self.due = now + settings.REALTIME_BUDGET_GRACE_SECONDS
        await warn(budget_warning(scope))
        return False


# --- The budget board: one look per project for the whole process ---------------------------------------

class _Board:
    """Every live session's BudgetGuard, by project. One task per process wakes every
    BILLING_SPEND_CACHE_SECONDS, reads each project's budget state once (this process's copy; a query
    when it is stale) and tells only the guards whose key or project is spent: a session has no budget
    timer of its own (issue 14: 500 idle sessions each looking every 5 s were about a third of an idle
    process's CPU)."""

    def __init__(self) -> None:
        self.guards: dict[int, set[BudgetGuard]] = {}
        self.task: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None


_board = _Board()


def budget_board_add(guard: BudgetGuard) -> None:
    loop = asyncio.get_running_loop()
    if _board.loop is not loop:  # a new event loop (tests run one per test): nothing of the old one holds
        _board.guards.clear()
        _board.task = None
        _board.loop = loop
    _board.guards.setdefault(guard.auth.project_id, set()).add(guard)
    if _board.task is None or _board.task.done():
        _board.task = loop.create_task(_board_run(), name="budget-board")


def budget_board_discard(guard: BudgetGuard) -> None:
    guards = _board.guards.get(guard.auth.project_id)
    if guards is not None:
        guards.discard(guard)
        if not guards:
            del _board.guards[guard.auth.project_id]
    if not _board.guards and _board.task is not None:
        _board.task.cancel()  # nothing to look for: no timer while the process has no session
        _board.task = None


async def _board_run() -> None:
    while _board.guards:
        await sleep_to_tick(settings.BILLING_SPEND_CACHE_SECONDS)  # on the process's grid: a shared wake-up
        for project_id in list(_board.guards):
            try:
                state = budget_state_peek(project_id=project_id)
                if state is None:
                    state = await database_sync_to_async(budget_state_get)(project_id=project_id)
            except Exception:  # the database may be briefly away: keep the sessions, look again next time
                logger.exception("budget check failed for project %s", project_id)
                continue
            if state.project_limit is None and not state.key_limits:
                continue
            for guard in list(_board.guards.get(project_id, ())):
                if state.exceeded(guard.auth.key_id):
                    guard.spent()


async def budget_watch(*, auth, warn: Callable[[GatewayError], Awaitable[None]],
                       close: Callable[[GatewayError], Awaitable[None]]) -> None:
    """A BudgetGuard with a task of its own, for a holder without a clock of its own."""
    spent = asyncio.Event()
    guard = BudgetGuard(auth=auth, on_spent=spent.set)
    guard.watch()
    try:
        while True:
            if guard.warned:
                await asyncio.sleep(max(0.0, guard.due - time.monotonic()))
            else:
                await spent.wait()
                spent.clear()
            if await guard.step(time.monotonic(), warn=warn, close=close):
                return
    finally:
        guard.unwatch()
