"""Concurrent loads of one key share one load (project/singleflight.py): what a cold cache does with a
burst of session opens."""
from __future__ import annotations

import asyncio

import pytest

from project.singleflight import Flights

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


class Load:
    """A load that waits until released, counting how often it was started."""

    def __init__(self, result="row"):
        self.started = 0
        self.result = result
        self.release = asyncio.Event()

    async def __call__(self):
        self.started += 1
        await self.release.wait()
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


async def test_callers_of_one_key_share_one_load_and_its_result():
    flights: Flights[str] = Flights("test")
    load = Load()
    waiting = [asyncio.ensure_future(flights.run("key", load)) for _ in range(20)]
    await asyncio.sleep(0)
    load.release.set()
    assert await asyncio.gather(*waiting) == ["row"] * 20
    assert load.started == 1
    assert len(flights) == 0  # nothing kept once landed


async def test_other_keys_load_on_their_own():
    flights: Flights[str] = Flights("test")
    first, second = Load("a"), Load("b")
    waiting = [asyncio.ensure_future(flights.run("a", first)), asyncio.ensure_future(flights.run("b", second))]
    await asyncio.sleep(0)
    first.release.set()
    second.release.set()
    assert await asyncio.gather(*waiting) == ["a", "b"]
    assert (first.started, second.started) == (1, 1)


async def test_a_failed_load_fails_every_caller_and_the_next_call_loads_again():
    flights: Flights[str] = Flights("test")
    failing = Load(LookupError("no such row"))
    waiting = [asyncio.ensure_future(flights.run("key", failing)) for _ in range(3)]
    await asyncio.sleep(0)
    failing.release.set()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert [type(outcome) for outcome in outcomes] == [LookupError] * 3
    assert failing.started == 1

    again = Load()
    again.release.set()
    assert await flights.run("key", again) == "row"
    assert again.started == 1


async def test_a_cancelled_caller_leaves_the_load_to_the_others():
    flights: Flights[str] = Flights("test")
    load = Load()
    leaving = asyncio.ensure_future(flights.run("key", load))
    staying = asyncio.ensure_future(flights.run("key", load))
    await asyncio.sleep(0)
    leaving.cancel()
    await asyncio.gather(leaving, return_exceptions=True)
    load.release.set()
    assert await staying == "row"
    assert leaving.cancelled()
    assert load.started == 1

