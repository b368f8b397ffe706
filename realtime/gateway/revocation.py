"""Closing live sessions whose API key was revoked or expired, with one watcher per process.

Two paths, both per process rather than per session: a listener on one channel-layer channel that the
process adds to the ``apikey.<pk>`` group of every key it has live sessions for (api_key_revoke's
prompt notice, at-most-once), and one query every REALTIME_KEY_RECHECK_SECONDS that re-checks all
those keys at once (the notice may be lost). A session costs a dict entry here, not a channel-layer
subscription, a task and a database query of its own.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from channels.layers import get_channel_layer
from django.conf import settings

from accounts.notify import key_group
from project.ticks import sleep_to_tick
from realtime.gateway import availability
from realtime.gateway.auth import api_keys_inactive

logger = logging.getLogger(__name__)

# A channel-layer group forgets its members after its expiry (a day) and when Redis restarts empty, so
# the process joins a key's group again, but at most this often: one join per session was two Redis
# commands and a task on every open of a connect storm. Meanwhile the re-check covers a lost notice.
REJOIN_SECONDS = 60.0


class KeyWatch:
    """A registration: ``cancel()`` it when the session ends."""

    __slots__ = ("api_key_pk", "on_revoked", "watcher")

    def __init__(self, watcher: _Watcher, api_key_pk: str, on_revoked: Callable[[], None]):
        self.watcher = watcher
        self.api_key_pk = api_key_pk
        self.on_revoked = on_revoked

    def cancel(self) -> None:
        self.watcher.remove(self)


class _Watcher:
    """The watches of one event loop, by key, and the two background tasks serving them."""

    def __init__(self):
        self.watches: dict[str, set[KeyWatch]] = {}
        self.joined: dict[str, float] = {}  # key -> when its group was last joined
        self.channel_name: str | None = None
        self._channel_lock = asyncio.Lock()
        self.tasks: list[asyncio.Task] = []
        self.layer = get_channel_layer()

    async def add(self, watch: KeyWatch) -> None:
        new_key = watch.api_key_pk not in self.watches
        self.watches.setdefault(watch.api_key_pk, set()).add(watch)
        loop = asyncio.get_running_loop()
        if not self.tasks:
            self.tasks = [loop.create_task(self._recheck(), name="key-watch:recheck")]
        if self.layer is None:
            return
        if self.channel_name is None:
            async with self._channel_lock:
                if self.channel_name is None:
                    self.channel_name = await self.layer.new_channel()
                    self.tasks.append(loop.create_task(self._listen(), name="key-watch:listen"))
        now = time.monotonic()
        if not new_key and now - self.joined.get(watch.api_key_pk, 0.0) < REJOIN_SECONDS:
            return
        self.joined[watch.api_key_pk] = now
        join = self.layer.group_add(key_group(watch.api_key_pk), self.channel_name)
        if not new_key:
            self._background(join)  # the group forgets members after its expiry: joined again, in passing
            return
        # A key new to this process: in the group before the session goes live, so a revocation right
        # after it opened is not sent to nobody (the re-check would only catch it seconds later).
        try:
            await join
        except Exception:
            logger.warning("key watch: could not join the group of key %s; the re-check covers it",
                           watch.api_key_pk, exc_info=True)

    def remove(self, watch: KeyWatch) -> None:
        watches = self.watches.get(watch.api_key_pk)
        if watches is None:
            return
        watches.discard(watch)
        if not watches:
            del self.watches[watch.api_key_pk]
            self.joined.pop(watch.api_key_pk, None)
            if self.channel_name is not None:
                self._background(self.layer.group_discard(key_group(watch.api_key_pk), self.channel_name))

    def revoked(self, api_key_pk: str) -> None:
        for watch in list(self.watches.get(api_key_pk, ())):
            try:
                watch.on_revoked()
            except Exception:
                logger.exception("revocation callback failed for key %s", api_key_pk)

    def _background(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro, name="key-watch:group")
        self.tasks.append(task)
        task.add_done_callback(self._group_call_done)

    def _group_call_done(self, task: asyncio.Task) -> None:
        if task in self.tasks:
            self.tasks.remove(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            availability.failure_logged(logger, "key watch: channel-layer group update failed", error)

    async def _listen(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                availability.failure_logged(logger, "key watch: channel-layer receive failed; retrying", exc)
                await asyncio.sleep(1)
                continue
            if message.get("type") == "key.revoked":
                self.revoked(str(message.get("api_key_pk")))

    async def _recheck(self) -> None:
        while True:
            await sleep_to_tick(settings.REALTIME_KEY_RECHECK_SECONDS)  # on the process's grid: a shared wake-up
            if not self.watches:
                continue
            try:
                inactive = await api_keys_inactive(api_key_pks=list(self.watches))
            except Exception as exc:
                availability.failure_logged(logger, "key re-check failed; sessions stay open until the next one", exc)
                continue
            for api_key_pk in inactive:
                self.revoked(api_key_pk)


# One watcher per event loop (a server process has one; tests may run several loops in turn).
_watchers: dict[asyncio.AbstractEventLoop, _Watcher] = {}


async def key_watch(*, api_key_pk: str, on_revoked: Callable[[], None]) -> KeyWatch:
    """Call ``on_revoked()`` (on this event loop) once the key is found revoked or expired. Returns once
    this process hears the key's revocation notice."""
    loop = asyncio.get_running_loop()
    watcher = _watchers.get(loop)
    if watcher is None:
        for stale in [other for other in _watchers if other.is_closed()]:
            del _watchers[stale]
        watcher = _watchers[loop] = _Watcher()
    watch = KeyWatch(watcher, str(api_key_pk), on_revoked)
    await watcher.add(watch)
    return watch
