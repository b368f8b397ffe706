"""One clock per process for every per-session deadline (duration, idle, budget look and grace, the
resume window, the in-process slot lease).

The event loop already keeps one sorted heap of timers, served by the loop itself: an ``Alarm`` is a
timer on it, moved as the session's next deadline moves. A session therefore has no task of its own
waking every half second; an idle session costs nothing until its next deadline, and the alarm's
callback is a plain function that only looks at the time. Work that must await (a budget look, a close)
runs in a task the holder starts then (realtime.gateway.lifecycle).

Leases shared with other processes (session ownership, per-key slots in Redis) are not per-session
deadlines: the process monitor renews all of them in one pipelined call per second (liveness.py).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Alarm:
    """One deadline on the process clock. ``set`` moves it (to ``time.monotonic()`` time); when it
    passes, ``callback`` runs on the event loop, once, unless cancelled or moved first."""

    __slots__ = ("_callback", "_handle", "_name")

    def __init__(self, callback: Callable[[], None], *, name: str):
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self._name = name

    def set(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        # call_later from time.monotonic(): uvloop's loop.time() has its own (millisecond) clock.
        self._handle = asyncio.get_running_loop().call_later(max(0.0, when - time.monotonic()), self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    @property
    def armed(self) -> bool:
        return self._handle is not None

    def _fire(self) -> None:
        self._handle = None
        try:
            self._callback()
        except Exception:  # a bug in one session's rule must not reach the loop's handler silently
            logger.exception("alarm %s failed", self._name)
