"""Is this process able to take a new session? PostgreSQL and Redis reachability, and draining.

A monitor task (started by realtime.gateway.liveness with the heartbeat) looks at both dependencies every
second with short timeouts: the heartbeat's own Redis round trip is the Redis probe, and PostgreSQL is
probed on a connection of the monitor's own (never Django's shared database thread, which a hung
database blocks). A failed probe, or an outage error met anywhere on the admission path, marks the
dependency down: one WARNING line per outage, one INFO line when it is back. While a dependency is
down or the process drains, ``admission_check`` refuses a new session at once with a coded error
(``service_unavailable``, close 1013; ``server_shutting_down``, close 1012) instead of accepting it and
dropping it later; live sessions are not touched. Recovery needs no restart: the next good probe
(or a successful admission) marks the dependency up.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from django.conf import settings

from realtime.gateway.limits import GatewayError

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 1.5
CLOSE_TRY_AGAIN_LATER = 1013  # RFC 6455: "Try Again Later"
CLOSE_SERVICE_RESTART = 1012  # RFC 6455: "Service Restart"

SERVICE_UNAVAILABLE = GatewayError(
    "service_unavailable", "The gateway cannot reach its database or Redis right now; retry shortly.",
    CLOSE_TRY_AGAIN_LATER, "server_error",
)
SERVER_SHUTTING_DOWN = GatewayError(
    "server_shutting_down", "This gateway process is shutting down; connect again (another process will serve you).",
    CLOSE_SERVICE_RESTART, "server_error",
)


class Dependency:
    """Up/down state of one dependency, logged once per outage. A failure within FLAP_SECONDS of a
    recovery (typically a pooled connection the outage closed, met on first use) continues the same
    outage in the log rather than starting a new one."""

    FLAP_SECONDS = 5.0

    def __init__(self, name: str):
        self.name = name
        self.down_since: float | None = None
        self._up_since = float("-inf")
        self._quiet = False

    @property
    def up(self) -> bool:
        return self.down_since is None

    def mark_down(self, error: BaseException | str) -> None:
        if self.down_since is not None:
            return
        now = time.monotonic()
        self.down_since = now
        self._quiet = now - self._up_since < self.FLAP_SECONDS
        detail = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        logger.log(logging.DEBUG if self._quiet else logging.WARNING,
                   "%s unavailable: %s; new sessions are refused with service_unavailable until it is back",
                   self.name, str(detail)[:300])

    def mark_up(self) -> None:
        if self.down_since is not None:
            now = time.monotonic()
            logger.log(logging.DEBUG if self._quiet else logging.INFO, "%s available again after %.1f s",
                       self.name, now - self.down_since)
            self.down_since = None
            self._up_since = now


redis_dependency = Dependency("redis")
database_dependency = Dependency("database")
DEPENDENCIES = (database_dependency, redis_dependency)

_state = {"draining": False}


def draining() -> bool:
    return _state["draining"]


def drain_begin() -> None:
    _state["draining"] = True


def outage_of(exc: BaseException) -> Dependency | None:
    """The dependency an exception says is unreachable (None: not an outage, a bug to report)."""
    import redis.exceptions
    from django.db import InterfaceError, OperationalError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                                redis.exceptions.BusyLoadingError)):
            return redis_dependency
        if isinstance(current, (OperationalError, InterfaceError, DatabaseTimeout)):
            return database_dependency
        try:
            import psycopg

            if isinstance(current, psycopg.OperationalError):
                return database_dependency
        except ImportError:  # pragma: no cover - SQLite-only installs
            pass
        current = current.__cause__ or current.__context__
    return None


class DatabaseTimeout(Exception):
    """A database call on the session path took longer than its bound."""


def admission_check() -> GatewayError | None:
    """The refusal for a new session now (no I/O), or None when it may proceed."""
    if draining():
        return SERVER_SHUTTING_DOWN
    if not all(dependency.up for dependency in DEPENDENCIES):
        return SERVICE_UNAVAILABLE
    return None


def admission_failure(exc: BaseException) -> GatewayError | None:
    """An exception raised while admitting a session: SERVICE_UNAVAILABLE if it is an outage (which is
    then marked, and logged once), else None (the caller reports it as the bug it is)."""
    if isinstance(exc, asyncio.TimeoutError):
        database_dependency.mark_down("admission timed out")
        return SERVICE_UNAVAILABLE
    dependency = outage_of(exc)
    if dependency is None:
        return None
    dependency.mark_down(exc)
    return SERVICE_UNAVAILABLE


def ready() -> tuple[bool, dict[str, str]]:
    """For /readyz: every dependency up and not draining."""
    detail = {dependency.name: "up" if dependency.up else "down" for dependency in DEPENDENCIES}
    detail["draining"] = "yes" if draining() else "no"
    return all(dependency.up for dependency in DEPENDENCIES) and not draining(), detail


# --- Probes ------------------------------------------------------------------------------------------

class Prober:
    """The database probe's connection of the monitor's own (reused while it works), each call bounded
    in time. Redis needs no probe of its own: the heartbeat (liveness.beat) is a Redis round trip every
    second, and marks Redis up or down."""

    def __init__(self) -> None:
        self._pg: Any = None  # psycopg.AsyncConnection, made on first use
        self._pg_task: asyncio.Task | None = None

    async def database(self) -> None:
        """``select 1`` in a task of its own, awaited at most PROBE_TIMEOUT_SECONDS: a hung server is
        never cancelled at (psycopg's cancel would wait on it too); the next probe waits for the same
        task, which ends when the server answers again."""
        db = settings.DATABASES["default"]
        if db["ENGINE"] != "django.db.backends.postgresql":
            return  # SQLite: a file, nothing to reach
        task = self._pg_task
        if task is None or task.done():
            task = self._pg_task = asyncio.get_running_loop().create_task(self._select_one(db), name="fleet-db-probe")
        done, _pending = await asyncio.wait({task}, timeout=PROBE_TIMEOUT_SECONDS)
        if not done:
            raise TimeoutError
        task.result()

    async def _select_one(self, db: dict) -> None:
        import psycopg

        try:
            if self._pg is None:
                self._pg = await psycopg.AsyncConnection.connect(
                    dbname=db["NAME"], user=db.get("USER") or None, password=db.get("PASSWORD") or None,
                    host=db.get("HOST") or None, port=db.get("PORT") or None,
                    connect_timeout=max(1, int(PROBE_TIMEOUT_SECONDS)), autocommit=True,
                )
            await self._pg.execute("select 1")
        except BaseException:
            connection, self._pg = self._pg, None
            if connection is not None:
                _quietly_sync(connection.pgconn.finish)
            raise

    async def probe(self) -> None:
        """Probe the database; mark it up or down."""
        try:
            await self.database()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            database_dependency.mark_down(f"no answer within {PROBE_TIMEOUT_SECONDS:.1f} s"
                                          if isinstance(exc, asyncio.TimeoutError) else exc)
        else:
            database_dependency.mark_up()

    async def close(self) -> None:
        if self._pg_task is not None:
            self._pg_task.cancel()
        if self._pg is not None:
            _quietly_sync(self._pg.pgconn.finish)


def _quietly_sync(call) -> None:
    try:
        call()
    except Exception:
        pass


# --- The admission bound -----------------------------------------------------------------------------

_abandoned: set[asyncio.Task] = set()


async def within_admission_bound(coro):
    """Run an admission (authentication, session start) for at most REALTIME_ADMISSION_TIMEOUT_SECONDS.
    Past it the client is refused (raises asyncio.TimeoutError, which ``admission_failure`` turns into
    service_unavailable) without waiting for the stuck call: a hung database must not hold the client
    nor the caller. The abandoned attempt is cancelled and kept referenced until it ends."""
    task = asyncio.ensure_future(coro)
    done, _pending = await asyncio.wait({task}, timeout=settings.REALTIME_ADMISSION_TIMEOUT_SECONDS)
    if task in done:
        return task.result()
    task.cancel()
    _abandoned.add(task)
    task.add_done_callback(_abandoned.discard)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: no "never retrieved" noise
    raise TimeoutError("admission timed out")


def failure_logged(log: logging.Logger, message: str, exc: BaseException, *args) -> None:
    """Log a failed background step: an outage once (its dependency marked down, one line per outage),
    anything else with its traceback (a bug)."""
    dependency = outage_of(exc)
    if dependency is None:
        log.error(message, *args, exc_info=exc)
    else:
        dependency.mark_down(exc)
