"""What every Redis client of the process is made with, besides its URL.

redis-py looks its own version up in the installed package's metadata (``importlib.metadata``, which
parses the METADATA file as an e-mail message) for every new connection it makes, unless it is given a
``DriverInfo``: about 3 ms of the event loop per connection. A fresh process fills its pool in its first
connect storm, one connection per command in flight, so that was 100 look-ups on the loop while the
first sessions waited for ``session.created`` (issue 14). One DriverInfo, resolved once, serves all.
"""
from __future__ import annotations

import functools
import typing


@functools.cache
def _driver_info():
    from redis.driver_info import DriverInfo

    return DriverInfo()


def redis_options() -> dict[str, typing.Any]:
    """Keyword arguments for ``Redis.from_url`` / ``ConnectionPool.from_url`` (sync or asyncio)."""
    return {"driver_info": _driver_info()}
