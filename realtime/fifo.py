"""A first-in first-out queue for one consumer task: a deque and, while the consumer waits, one future.

Used per session on the relay's hot path instead of asyncio.Queue, which holds four deques and an Event
per instance (memory per idle session is a goal: bench/README.md, "Relay").
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Fifo(Generic[T]):
    __slots__ = ("items", "_waiter")

    def __init__(self):
        self.items: deque[T] = deque()
        self._waiter: asyncio.Future | None = None

    def __len__(self) -> int:
        return len(self.items)

    def put(self, item: T) -> None:
        self.items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> T:
        """The oldest item, waiting for one if there is none (one consumer at a time)."""
        while not self.items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.items.popleft()

    def clear(self) -> None:
        self.items.clear()
