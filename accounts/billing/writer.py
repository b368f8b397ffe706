"""The usage writer: one per process, the only path from the gateway's meters to the ledger.

Every REALTIME_METER_FLUSH_SECONDS it takes what each live meter counted (``UsageSource.usage_take``)
and writes all of it in one transaction (accounts.billing.ledger), in a thread of its own
("usage-writer"), never the thread Channels' database_sync_to_async shares, and never on the relay
path. A meter that must know its usage is safe (a session's end, a task result about to be delivered)
hands its batch over with ``usage_report`` and is answered once the batch is durable; that wakes the
writer at once, and whatever else is pending goes in the same write.

Nothing is lost: a write that fails (the database is away) goes to this process's spool file
(accounts.billing.spool, fsynced) and is retried from there each interval until it is written, also by
another process (or this one restarted) if this one ends first. Nothing is counted twice: every row has
an idempotency key and the ledger inserts only the ones it does not hold.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, connection

from accounts.billing.ledger import UsageBatch, ledger_write, usage_batch_price
from accounts.billing.spool import UsageSpool
from project.ticks import tick_at_or_before

logger = logging.getLogger(__name__)

# Batches per transaction when a long outage left many to write.
WRITE_CHUNK = 2000
# How long a caller of usage_report waits before leaving its batch with the writer (a database that
# hangs rather than refuses); the batch is still written or spooled when the write ends.
REPORT_WAIT_SECONDS = 10.0
ADOPT_EVERY_SECONDS = 10.0


class UsageSource(Protocol):
    def usage_take(self) -> UsageBatch | None: ...


class _Store:
    """What outlives a writer bound to a closed event loop (tests run one loop per test): the spool,
    the batches it holds and the carried price remainders. Touched from the writer thread only."""

    def __init__(self) -> None:
        self.spool = UsageSpool()
        self.unwritten: list[UsageBatch] = []  # what the spool file holds, oldest first
        self.remainders: dict[str, dict[str, int]] = {}  # by meter id
        self.adopted_at = 0.0
        self.failing = False
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage-writer")


class UsageWriter:
    def __init__(self, store: _Store):
        self._store = store
        self._loop = asyncio.get_running_loop()
        self._sources: set[UsageSource] = set()
        self._reported: list[tuple[UsageBatch | None, asyncio.Future | None]] = []
        self._wake = asyncio.Event()
        self._closing = False
        self.last_write_ok = time.time()
        self._task = self._loop.create_task(self._run(), name="usage-writer")

    # --- The loop side ------------------------------------------------------------------------------

    def source_add(self, source: UsageSource) -> None:
        self._sources.add(source)

    def source_discard(self, source: UsageSource) -> None:
        self._sources.discard(source)

    def report(self, batch: UsageBatch | None) -> asyncio.Future:
        """``batch`` for the next write (None: only wait for it, so for any write under way)."""
        future = self._loop.create_future()
        self._reported.append((batch, future))
        self._wake.set()
        return future

    async def _run(self) -> None:
        while not self._closing:
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancel (gh-86296).
                # On the process's grid, never later than the interval: a shared wake-up (project/ticks.py).
                interval = settings.REALTIME_METER_FLUSH_SECONDS
                async with asyncio.timeout_at(tick_at_or_before(self._loop.time() + interval, period=interval)):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            await self.cycle()

    async def cycle(self) -> None:
        """Take every source's usage and write it with what was reported (and what waits in the spool)."""
        reported, self._reported = self._reported, []
        batches = [batch for source in list(self._sources) if (batch := source.usage_take()) is not None]
        batches.extend(batch for batch, _ in reported if batch is not None)
        try:
            written = await self._loop.run_in_executor(self._store.executor, _write, self._store, batches)
        except Exception as exc:  # the spool itself failed (disk full): keep the batches in memory
            logger.exception("usage could not be written nor spooled; kept in memory, retried next interval")
            self._reported = [(batch, None) for batch in batches] + self._reported
            for _, future in reported:
                if future is not None and not future.done():
                    future.set_exception(exc)
            return
        if written:
            self.last_write_ok = time.time()
        for _, future in reported:
            if future is not None and not future.done():
                future.set_result(None)

    async def close(self) -> None:
        """Write what is counted and reported (or spool it), then stop. A write under way is let
        finish, not cancelled: cancelling it would drop the futures of the batches it holds, and their
        callers (a session ending as the drain began) would wait REPORT_WAIT_SECONDS for nothing."""
        self._closing = True
        self._wake.set()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.cycle()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def spooled(self) -> int:
        return len(self._store.unwritten)


# --- The writer thread ----------------------------------------------------------------------------

def _price(store: _Store, batches: list[UsageBatch]) -> None:
    for batch in batches:  # in order: each session's remainder carries from one batch to the next
        remainders = store.remainders.setdefault(batch.meter_id, {})
        usage_batch_price(batch, remainders=remainders)
        if batch.final:
            store.remainders.pop(batch.meter_id, None)


def _write_all(store: _Store, batches: list[UsageBatch]) -> None:
    """Write in chunks; a batch the database refuses for its content is set aside, not retried forever."""
    for start in range(0, len(batches), WRITE_CHUNK):
        chunk = batches[start:start + WRITE_CHUNK]
        _price(store, chunk)
        try:
            ledger_write(batches=chunk)
        except (OperationalError, InterfaceError):
            raise
        except DatabaseError:
            logger.exception("a usage write was refused; writing its batches one by one")
            rejected = []
            for batch in chunk:
                try:
                    ledger_write(batches=[batch])
                except (OperationalError, InterfaceError):
                    raise
                except DatabaseError:
                    rejected.append(batch)
            if rejected:
                logger.error("%d usage batches refused by the database were set aside in %s", len(rejected),
                             store.spool.directory)
                store.spool.reject(rejected)


Observer = Callable[..., None]
_observers: list[Observer] = []


def usage_writer_observe(observer: Observer) -> None:
    """Call ``observer(records=..., lag_seconds=...)`` after every write attempt: ledger rows waiting in
    the spool, and the age of the oldest (0 when everything is written). For metrics."""
    _observers.append(observer)


def _observe(store: _Store) -> None:
    records = sum(len(batch.amounts) for batch in store.unwritten)
    oldest = min((batch.occurred_at.timestamp() for batch in store.unwritten), default=None)
    lag = max(0.0, time.time() - oldest) if oldest is not None else 0.0
    for observer in _observers:
        try:
            observer(records=records, lag_seconds=lag)
        except Exception:
            logger.exception("usage writer observer failed")


def _write(store: _Store, batches: list[UsageBatch]) -> bool:
    """In the writer thread: the spooled batches then ``batches``, or ``batches`` to the spool.
    True when the ledger was written."""
    try:
        return _write_pending(store, batches)
    finally:
        _observe(store)


def _write_pending(store: _Store, batches: list[UsageBatch]) -> bool:
    now = time.monotonic()
    if now - store.adopted_at >= ADOPT_EVERY_SECONDS or store.adopted_at == 0.0:
        store.adopted_at = now
        store.unwritten.extend(store.spool.adopt_orphans())
    for batch in batches:
        if batch.final and not batch.amounts:  # nothing left to bill: only its carried remainders go
            store.remainders.pop(batch.meter_id, None)
    pending = store.unwritten + [batch for batch in batches if batch.amounts]
    if not pending:
        return False
    close_old_connections()
    try:
        _write_all(store, pending)
    except Exception:
        try:
            connection.close()  # a fresh connection next time, once the database is back
        except Exception:
            pass
        if not store.failing:
            logger.warning("usage write failed (%d batches kept in the spool %s); retrying every %g s",
                           len(pending), store.spool.directory, settings.REALTIME_METER_FLUSH_SECONDS,
                           exc_info=True)
        store.failing = True
        new = [batch for batch in batches if batch.amounts]
        store.spool.append(new)
        store.unwritten.extend(new)
        return False
    finally:
        close_old_connections()
    if store.failing:
        logger.warning("usage writes succeed again; %d spooled batches written", len(store.unwritten))
        store.failing = False
    if store.unwritten:
        store.unwritten = []
        store.spool.clear()
    return True


def _store_get() -> _Store:
    global _store
    if _store is None:
        _store = _Store()
    return _store


def _keep(store: _Store) -> None:
    """The keeper thread: every interval, on the writer thread, adopt spools of ended processes and
    retry what waits in the spool, whether or not this process has sessions (a restarted process
    writes what its previous life spooled). Costs nothing when there is nothing to write."""
    while True:
        time.sleep(settings.REALTIME_METER_FLUSH_SECONDS)
        try:
            future = store.executor.submit(_write, store, [])
        except RuntimeError:  # the writer thread was shut down: the process is ending, nothing to keep
            return
        try:
            future.result()
        except Exception:
            logger.exception("the usage spool keeper failed; retrying")


_keeper: threading.Thread | None = None
_keeper_lock = threading.Lock()


def usage_spool_keeper_start() -> None:
    """Start the keeper (once per process; the ASGI application does, at import)."""
    global _keeper
    with _keeper_lock:
        if _keeper is None:
            _keeper = threading.Thread(target=_keep, args=(_store_get(),), name="usage-spool-keeper", daemon=True)
            _keeper.start()


# --- The process's writer ---------------------------------------------------------------------------

_store: _Store | None = None
_writer: UsageWriter | None = None


def usage_writer() -> UsageWriter:
    """This process's writer, bound to the running event loop (started on first use)."""
    global _writer
    loop = asyncio.get_running_loop()
    if _writer is None or _writer.loop is not loop:
        _writer = UsageWriter(_store_get())
    return _writer


def usage_source_add(source: UsageSource) -> None:
    """Take ``source``'s usage at every flush interval, until ``usage_source_discard``."""
    usage_writer().source_add(source)


def usage_source_discard(source: UsageSource) -> None:
    if _writer is not None:
        _writer.source_discard(source)


async def usage_report(batch: UsageBatch | None) -> None:
    """The gateway's one call to bill usage now: returns once ``batch`` is in the ledger or in the
    spool (or after REPORT_WAIT_SECONDS if the database hangs; it is still written later). With None,
    returns once whatever the writer had taken before is."""
    future = usage_writer().report(batch)
    try:
        async with asyncio.timeout(REPORT_WAIT_SECONDS):
            await asyncio.shield(future)
    except TimeoutError:
        logger.warning("usage of session %s is taking long to write; left with the writer",
                       batch.session_id if batch else "(any)")
    except Exception:  # neither written nor spooled (the disk too): the writer keeps it and retries
        logger.warning("usage of session %s is kept in memory until it can be written",
                       batch.session_id if batch else "(any)")


async def usage_writer_close() -> None:
    """At shutdown (after the sessions closed): write or spool everything still counted."""
    global _writer
    if _writer is not None and _writer.loop is asyncio.get_running_loop():
        writer, _writer = _writer, None
        await writer.close()


def usage_writer_stats() -> dict:
    """For metrics: batches waiting in the spool, and when the ledger was last written (epoch seconds)."""
    return {"spooled_batches": len(_store.unwritten) if _store else 0,
            "last_write_ok": _writer.last_write_ok if _writer else None}
