"""SIGTERM drains the process instead of dropping its sessions.

On the first SIGTERM (or SIGINT) the process: stops admitting (``availability.draining()``: /readyz
turns 503 so the balancer sends no one here, and a session that still arrives is refused with
``server_shutting_down``, close 1012); tells every live session why and closes it (an ``error``
event ``server_shutting_down`` whose message says whether it can be resumed elsewhere, then close
1012), which flushes its usage and closes its session record; runs the other drain hooks (e.g. the
rooms dialect, the usage writer); then hands over to the server's own shutdown (uvicorn's handler).
All of it within DRAIN_GRACE_SECONDS; a second signal skips the wait.

The handler is installed on the first request, after the server installed its own, and calls that
one when done, so the server's shutdown (close listeners, wait for connections) runs as before.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable

from django.conf import settings

from realtime.gateway import availability
from realtime.gateway.limits import GatewayError

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)

# Gateway sessions hold their upstream connection in this process: they cannot move.
SESSION_ENDED = GatewayError(
    "server_shutting_down",
    "This gateway process is shutting down. The session cannot be resumed elsewhere; start a new one "
    "(another process will serve it).",
    availability.CLOSE_SERVICE_RESTART, "server_error",
)

# A conversation's history is in the database: reconnecting with its conversationId continues it anywhere.
CONVERSATION_ENDED = GatewayError(
    "server_shutting_down",
    "This gateway process is shutting down. The conversation can be resumed elsewhere: reconnect with its "
    "conversationId (another process will serve it).",
    availability.CLOSE_SERVICE_RESTART, "server_error",
)
ENDED_BY_DIALECT = {"conversation": CONVERSATION_ENDED}

Hook = Callable[[], Awaitable[None]]
_hooks: list[tuple[str, Hook]] = []
_state: dict = {"installed": False, "task": None, "previous": {}}


def drain_hook(name: str, hook: Hook) -> None:
    """Run ``hook`` while draining, after the sessions are closed (e.g. flush a usage writer)."""
    _hooks.append((name, hook))


async def _close_sessions() -> None:
    from realtime.gateway.session import sessions_live

    sessions = sessions_live()
    if sessions:
        await asyncio.gather(*(session.close(reason="server_shutting_down",
                                             error=ENDED_BY_DIALECT.get(session.dialect, SESSION_ENDED))
                               for session in sessions), return_exceptions=True)


async def drain() -> None:
    """Everything but the exit. Bounded by DRAIN_GRACE_SECONDS."""
    started = time.monotonic()
    availability.drain_begin()
    from realtime.gateway.session import sessions_live

    logger.warning("draining: %d live sessions, grace %.0f s", len(sessions_live()), settings.DRAIN_GRACE_SECONDS)

    async def everything() -> None:
        from realtime.gateway.lifecycle import lifecycles_released
        from realtime.gateway.records import records_flush

        await _close_sessions()
        for name, hook in _hooks:
            try:
                await hook()
            except Exception:
                logger.exception("drain hook %s failed", name)
        await lifecycles_released()  # a dialect's connections may end after its hook returned
        await records_flush()  # last: every session's end is noted by now

    try:
        async with asyncio.timeout(settings.DRAIN_GRACE_SECONDS):  # not wait_for: it can swallow a cancel (gh-86296)
            await everything()
    except TimeoutError:
        logger.error("drain: grace period of %.0f s ran out; %d sessions left", settings.DRAIN_GRACE_SECONDS,
                     len(sessions_live()))
    from realtime.gateway import liveness

    await liveness.stop()
    logger.warning("drained in %.2f s", time.monotonic() - started)


def _handover(signum: int) -> None:
    previous = _state["previous"].get(signum)
    if callable(previous):
        previous(signum, None)
    else:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)


def _on_signal(signum: int, frame) -> None:
    loop = _state["loop"]
    task = _state["task"]
    if task is not None:  # a second signal: stop waiting
        _handover(signum)
        return

    async def run() -> None:
        try:
            await drain()
        finally:
            _handover(signum)

    def start() -> None:
        _state["task"] = loop.create_task(run(), name="fleet-drain")

    loop.call_soon_threadsafe(start)
    _state["task"] = True  # a marker until the task exists


def _server_handler(handler) -> bool:
    """A handler a server installed (uvicorn's, Twisted's), not Python's defaults (a test process)."""
    return callable(handler) and handler is not signal.default_int_handler


def install() -> bool:
    """Install the drain on SIGTERM/SIGINT once, in front of the server's own handlers. False (and
    nothing installed) when no server owns the signals: e.g. the application called in a test process."""
    if not _state["installed"]:
        _state["installed"] = True
        handlers = {signum: signal.getsignal(signum) for signum in SIGNALS}
        _state["server"] = any(_server_handler(handler) for handler in handlers.values())
        if _state["server"]:
            _state["loop"] = asyncio.get_running_loop()
            for signum, handler in handlers.items():
                _state["previous"][signum] = handler
                signal.signal(signum, _on_signal)
    return bool(_state["server"])
