"""Concurrent loads of the same thing share one load. A per-process cache that is cold (a process just
started, and every client of a restarted peer reconnects to it at once) otherwise sends one database
round trip per session open, all queued on the one database thread every session shares, when one per
key would do (issue 14: the first connect storm of a fresh process waited 300-600 ms for it)."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Flights(Generic[T]):
    """``await flights.run(key, load)``: the result of ``load()``, started only if no load of ``key`` is
    under way on this event loop, else the one under way. A caller cancelled while waiting leaves the
    load running for the others."""

    def __init__(self, name: str):
        self._name = name
        self._running: dict[tuple[asyncio.AbstractEventLoop, Hashable], asyncio.Task[T]] = {}

    async def run(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        slot = (loop, key)
        task = self._running.get(slot)
        if task is None:
            task = loop.create_task(_awaited(load), name=f"{self._name}:load")
            self._running[slot] = task
            task.add_done_callback(lambda done: self._landed(slot, done))
        return await asyncio.shield(task)

    def _landed(self, slot, task: asyncio.Task[T]) -> None:
        if self._running.get(slot) is task:
            del self._running[slot]
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have been cancelled meanwhile

    def __len__(self) -> int:
        return len(self._running)


async def _awaited(load: Callable[[], Awaitable[T]]) -> T:
    return await load()
