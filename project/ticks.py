"""One grid of whole seconds, on the event loop's clock, for the process's periodic work.

An idle gateway's CPU time is mostly wake-ups, not work: on the 2-core virtual machines of bench/README.md
a process that wakes once a second to do nothing spends about 0.28 ms of CPU per second, ten times a
second 2 ms. Keepalive pings (both legs of every session), the heartbeat and the flushes each ran on a
timer of their own, so 500 idle sessions woke the process about 50 times a second for pings alone.
Timers due on the same grid point run in the same loop iteration: pings due within the same second,
the heartbeat and the flushes share one wake-up (issue 14).

Periods shorter than a tick (tests shorten them) are left off the grid.
"""
from __future__ import annotations

import asyncio
import math

TICK_SECONDS = 1.0
SLACK_SECONDS = 0.05


def tick_at_or_after(when: float, *, period: float) -> float:
    """The first grid point not before ``when`` (event loop time), for work repeating every ``period``:
    at most a tick late."""
    if period < TICK_SECONDS:
        return when
    return math.ceil(when / TICK_SECONDS) * TICK_SECONDS


def tick_at_or_before(when: float, *, period: float) -> float:
    """The last grid point not after ``when`` (up to SLACK_SECONDS after it: clocks read a hair apart)
    but after now, for work repeating every ``period``: a job that runs on the grid stays on it, every
    ``period``; one off it comes back at once, never later."""
    if period < TICK_SECONDS:
        return when
    point = round(when / TICK_SECONDS) * TICK_SECONDS
    if point > when + SLACK_SECONDS:
        point -= TICK_SECONDS
    return point if point > asyncio.get_running_loop().time() else when


async def sleep_to_tick(seconds: float) -> None:
    """Sleep ``seconds`` or less, to a grid point (``tick_at_or_before``): a periodic job's pause."""
    now = asyncio.get_running_loop().time()
    await asyncio.sleep(max(0.0, tick_at_or_before(now + seconds, period=seconds) - now))
