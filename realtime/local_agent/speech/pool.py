"""The bounded thread pool of the speech stages (SPEECH_WORKERS threads): synthesis, and any other
CPU work that releases the GIL."""
from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def speech_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            from django.conf import settings

            _pool = ThreadPoolExecutor(max_workers=settings.SPEECH_WORKERS, thread_name_prefix="speech")
        return _pool


async def run_in_pool(fn: Callable, *args, **kwargs):
    return await asyncio.get_running_loop().run_in_executor(speech_pool(), functools.partial(fn, *args, **kwargs))
