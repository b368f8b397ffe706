"""Stopping a holder's background tasks, written once for every dialect.

A single ``cancel()`` is not enough on Python 3.11: ``asyncio.wait_for`` drops a cancellation that
arrives just as the awaited call finishes (CPython gh-86296, fixed in 3.12), and redis-py wraps every
command it sends in one. A loop cancelled during a Redis call may so carry on as if nothing happened,
and whoever awaits it (a connection's end: its session record, slot and redelivery buffer) would wait
forever. ``tasks_stop`` cancels again until every task has ended.
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterable

RECANCEL_SECONDS = 0.1  # a task that swallowed its cancel reaches its next await within this, or soon after


async def tasks_stop(tasks: Iterable[asyncio.Task]) -> None:
    """Cancel ``tasks`` (never the calling task) and wait until each has ended, cancelling again any
    that went on after its cancel."""
    current = asyncio.current_task()
    pending = {task for task in tasks if task is not current and not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=RECANCEL_SECONDS)
