"""The record of gateway sessions (realtime.models.SessionRecord): written by the gateway core, read
by the sessions page and the console. ``session_id`` is the gateway's own id (unique, as in the usage
ledger); ``client_key`` the client's id for it, which may name many sessions over time.

A session's record is written when it opens, and the open waits for it (``session_record_open``): that
is the step that finds a hung database, so new sessions are refused within the admission bound. Opens
that arrive together are written together (group commit): one multi-row INSERT in a thread of the
records' own, never the thread Channels' database_sync_to_async shares, so a connect storm costs one
transaction per batch rather than one per session. (On SQLite, the embedded single-process default,
opens use that shared thread: SQLite's in-memory test database locks a table against a second writing
thread.) A session's end is only noted (``session_record_close``: no I/O, safe on the event loop); the
same thread writes the noted ends every RECORD_FLUSH_SECONDS, in one statement on PostgreSQL. A write
of ends that fails (the database away, SQLite busy) is kept and tried again at the next flush, so a
record is never left "live" by a transient error. Opens and ends share the one thread, so an end noted
for an open already handed to it is written after that open.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from channels.db import database_sync_to_async
from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import QuerySet
from django.utils import timezone

from project.bulk import default_database_vendor, rows_insert_postgresql
from project.ticks import sleep_to_tick
from realtime.models import SessionRecord

logger = logging.getLogger(__name__)

CLOSE_REASON_MAX = 200
RECORD_FLUSH_SECONDS = 0.5
PENDING_MAX = 100_000  # notes held through a long outage before the oldest are dropped (and logged)


# --- Writing now (the writer's thread; tests) --------------------------------------------------------

def session_record_start(
    *, session_id: str, client_key: str = "", project_id: int, api_key_pk: str, key_id: str,
    deployment_id: int | None, dialect: str,
) -> SessionRecord:
    return SessionRecord.objects.create(
        session_id=session_id, client_key=client_key, project_id=project_id, api_key_id=api_key_pk, key_id=key_id,
        deployment_id=deployment_id, dialect=dialect,
    )


def session_record_end(*, record_id: int, close_reason: str) -> None:
    SessionRecord.objects.filter(pk=record_id, ended_at__isnull=True).update(
        ended_at=timezone.now(), close_reason=close_reason[:CLOSE_REASON_MAX]
    )


# --- Noting ends (the event loop) -------------------------------------------------------------------

class _Writer:
    def __init__(self) -> None:
        self.closes: dict[str, tuple[datetime, str]] = {}
        self.task: asyncio.Task | None = None
        self.opens: list[tuple[dict, asyncio.Future]] = []
        self.opens_task: asyncio.Task | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="session-records")


_writer = _Writer()


# --- Opens (the event loop; written together, awaited) ---------------------------------------------

async def session_record_open(**fields) -> None:
    """Write the record of a session that opens (``session_record_start``'s fields); return once it is
    committed. Cancelled before its batch was handed to the thread, it is never written."""
    if default_database_vendor() == "sqlite":
        await database_sync_to_async(session_record_start)(**fields)
        return
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    _writer.opens.append((fields, future))
    task = _writer.opens_task
    if task is None or task.done() or task.get_loop() is not loop:
        _writer.opens_task = loop.create_task(_opens_run(), name="session-records-opens")
    await future


async def _opens_run() -> None:
    """Hand what waits to the thread, one batch at a time: what arrives while a batch is written goes in
    the next one. Ends itself when nothing waits."""
    loop = asyncio.get_running_loop()
    while _writer.opens:
        batch = [(fields, future) for fields, future in _writer.opens if not future.done()]
        _writer.opens = []
        if not batch:
            continue
        outcomes = await loop.run_in_executor(_writer.executor, _insert, [fields for fields, _ in batch])
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if outcome is None:
                future.set_result(None)
            else:
                future.set_exception(outcome)


def _insert(batch: list[dict]) -> list[BaseException | None]:
    """In the records' thread: one INSERT for the batch; if the database refuses it (a key deleted
    meanwhile), row by row, so only the refused ones fail. Each open's outcome, in order."""
    close_old_connections()
    try:
        try:
            with transaction.atomic():
                if default_database_vendor() == "postgresql":
                    now = timezone.now()
                    rows_insert_postgresql(model=SessionRecord, fields=_OPEN_FIELDS,
                                           rows=[_open_row(fields, now) for fields in batch])
                else:
                    SessionRecord.objects.bulk_create([_record(fields) for fields in batch])
            return [None] * len(batch)
        except IntegrityError:
            pass
        outcomes: list[BaseException | None] = []
        for fields in batch:
            try:
                with transaction.atomic():
                    _record(fields).save(force_insert=True)
                outcomes.append(None)
            except Exception as exc:
                outcomes.append(exc)
        return outcomes
    except Exception as exc:  # the database away: every open of the batch fails with it
        return [exc] * len(batch)
    finally:
        close_old_connections()


_OPEN_FIELDS = ("session_id", "client_key", "project", "api_key", "key_id", "deployment", "dialect", "started_at",
                "close_reason")


def _open_row(fields: dict, started_at: datetime) -> tuple:
    """``_record``'s values in the order of _OPEN_FIELDS (PostgreSQL's unnested INSERT)."""
    return (fields["session_id"], fields.get("client_key", ""), fields["project_id"], fields["api_key_pk"],
            fields["key_id"], fields["deployment_id"], fields["dialect"], started_at, "")


def _record(fields: dict) -> SessionRecord:
    return SessionRecord(
        session_id=fields["session_id"], client_key=fields.get("client_key", ""), project_id=fields["project_id"],
        api_key_id=fields["api_key_pk"], key_id=fields["key_id"], deployment_id=fields["deployment_id"],
        dialect=fields["dialect"],
    )


def session_record_close(*, session_id: str, close_reason: str) -> None:
    _writer.closes[session_id] = (timezone.now(), close_reason[:CLOSE_REASON_MAX])
    _writer_ensure()


def _writer_ensure() -> None:
    loop = asyncio.get_running_loop()
    task = _writer.task
    if task is None or task.done() or task.get_loop() is not loop:
        _writer.task = loop.create_task(_writer_run(), name="session-records-writer")


async def _writer_run() -> None:
    """Write what was noted every RECORD_FLUSH_SECONDS; ends itself when nothing is left (an idle
    process has no task waking here)."""
    while _writer.closes:
        await sleep_to_tick(RECORD_FLUSH_SECONDS)  # on the process's grid: a shared wake-up
        await records_flush()


async def records_flush() -> None:
    """Write what is pending now (also at a drain, and for tests). A failed write is kept for the next."""
    closes, _writer.closes = _writer.closes, {}
    if not closes:
        return
    try:
        await asyncio.get_running_loop().run_in_executor(_writer.executor, _write, closes)
    except Exception as exc:
        from realtime.gateway import availability

        availability.failure_logged(logger, "session record ends not written (%d); trying again", exc, len(closes))
        _writer.closes = {**closes, **_writer.closes}
        overflow = len(_writer.closes) - PENDING_MAX
        if overflow > 0:
            logger.error("session records: %d ends dropped after a long outage", overflow)
            for session_id in list(_writer.closes)[:overflow]:
                del _writer.closes[session_id]


def records_discard() -> None:
    """Forget what is noted and not written (tests: nothing of one test reaches the next one's database)."""
    _writer.closes = {}
    _writer.opens = []


def _write(closes: dict[str, tuple[datetime, str]]) -> None:
    close_old_connections()
    try:
        with transaction.atomic():
            if default_database_vendor() == "postgresql":
                _write_postgresql(closes)
                return
            for session_id, (ended_at, reason) in closes.items():
                SessionRecord.objects.filter(session_id=session_id, ended_at__isnull=True).update(
                    ended_at=ended_at, close_reason=reason)
    finally:
        close_old_connections()


def _write_postgresql(closes: dict[str, tuple[datetime, str]]) -> None:
    """Every noted end in one UPDATE (the ends as array parameters, unnested): a storm of 500 closes is
    one statement rather than 500."""
    import psycopg
    from django.db import connection

    table = connection.ops.quote_name(SessionRecord._meta.db_table)
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            f"UPDATE {table} AS record SET ended_at = ended.at, close_reason = ended.reason "
            "FROM unnest(%b::varchar[], %b::timestamptz[], %b::varchar[]) AS ended(session_id, at, reason) "
            "WHERE record.session_id = ended.session_id AND record.ended_at IS NULL",
            [list(closes), [at for at, _ in closes.values()], [reason for _, reason in closes.values()]])


# --- Reading -------------------------------------------------------------------------------------------

def session_records_for_project(*, project_id: int, limit: int = 100) -> QuerySet[SessionRecord]:
    """Live sessions first, then the most recent ended ones."""
    return (
        SessionRecord.objects.filter(project_id=project_id)
        .select_related("deployment", "api_key")
        .order_by("-started_at")[:limit]
    )
