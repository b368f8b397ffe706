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
    """The deque exists only while items wait: an idle session holds none (a deque's first block is
    about 0.6 KiB)."""

    __slots__ = ("_items", "_waiter")

    def __init__(self):
        self._items: deque[T] | None = None
        self._waiter: asyncio.Future | None = None

    def __len__(self) -> int:
        return len(self._items) if self._items is not None else 0

    def put(self, item: T) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> T:
        """The oldest item, waiting for one if there is none (one consumer at a time)."""
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items.popleft()
        if not self._items:
            self._items = None
        return item

    def clear(self) -> None:
        self._items = None
