"""Running a task session's tasks and publishing their results.

Tasks outlive the connection that sent them (seed 001: results that cannot be delivered wait for the
client to reconnect), so they belong to a TaskSession in this process, not to the connection. A result
goes straight to the connection of the session attached in this process; with none, it goes to the
session's outbox (realtime.dialects.tasks.buffer: Redis when configured, so it outlives this process)
and a ``pending`` notice (realtime.dialects.tasks.notices) tells a connection attached in another
process to take the outbox. The notice is at-most-once but the outbox is not: a connection also takes
the outbox when it attaches, before anything is sent to it directly. A connection counts a result as
delivered only once the client answered a ping sent after it; until then it keeps the result, and
gives it back (to the connection resuming the session, or to the outbox) when it goes.

Usage and the timeline go under the session record of the connection that sent the task (TaskContext
.session_id), one meter per such session: a resumed session is a new record. A meter is closed (its
usage flushed) once its connection is gone and its tasks have finished. A TaskSession ends when no
connection is attached here and none of its tasks is running: it leaves the registry. Running tasks
are named and tracked; at process shutdown they are cancelled with the loop.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import orjson
from django.conf import settings

from realtime.dialects.tasks import TaskContext, TaskFailed, forward, images, inflight
from realtime.dialects.tasks import speech as speech_tasks
from realtime.dialects.tasks.buffer import task_outbox_push
from realtime.dialects.tasks.notices import task_notice_send
from realtime.gateway import availability
from realtime.gateway.auth import ConnectionAuth
from realtime.gateway.metering import SessionMeter
from realtime.sessions.timeline import timeline_note

logger = logging.getLogger(__name__)

Handler = Callable[[dict, TaskContext], Awaitable[dict]]


class TaskLink(Protocol):
    """A connection attached to a task session in this process."""

    @property
    def session_id(self) -> str: ...  # its session record's id (see TaskContext.session_id)

    async def deliver(self, text: str) -> None: ...
    def step_aside(self) -> list[str]: ...  # detach, close (session_replaced), return unconfirmed results


async def _ping(task: dict, ctx: TaskContext) -> dict:
    return {"pong": True}


HANDLERS: dict[str, Handler] = {
    "imageUpload": images.image_upload,
    "upscale": images.upscale,
    "imageUpscale": images.upscale,  # the name later versions of the seed's API use
    "text2speech": speech_tasks.text_to_speech,
    "speech2text": speech_tasks.speech_to_text,
    "ping": _ping,
    **{task_type: forward.forward for task_type in forward.MODEL_TASK_TYPES},
}


# A heartbeat is not work: it is neither billed nor worth a ledger write.
UNMETERED = frozenset({"ping"})
# Answered at once by the connection, without a task of its own (a heartbeat's round trip is the
# dialect's latency: bench/README.md, "Dialects").
INSTANT = frozenset({"ping"})


def instant_result(task: dict) -> str:
    return data_message(task, {"pong": True})


def data_message(task: dict, result: dict) -> str:
    return orjson.dumps({"data": [{"taskType": task["taskType"], "taskUUID": task["taskUUID"], **result}]}).decode()


def error_message(code: str, message: str, *, task_uuid=None, task_type=None, parameter=None) -> str:
    error = {"code": code, "message": message}
    if task_uuid is not None:
        error["taskUUID"] = task_uuid
    if task_type is not None:
        error["taskType"] = task_type
    if parameter is not None:
        error["parameter"] = parameter
    return orjson.dumps({"errors": [error]}).decode()


async def _tolerant(step) -> None:
    """A bookkeeping step that must not fail the task (e.g. during a Redis outage)."""
    try:
        await step
    except Exception as exc:
        availability.failure_logged(logger, "tasks: in-flight bookkeeping failed", exc)


_sessions: dict[str, TaskSession] = {}
_meters_closing: set[asyncio.Task] = set()  # final usage flushes of ended sessions (held until done)


class TaskSession:
    def __init__(self, *, session_uuid: str, auth: ConnectionAuth):
        self.session_uuid = session_uuid
        self.auth = auth
        self.links: list[TaskLink] = []  # connections attached in this process, oldest first
        self.running: dict[asyncio.Task, str] = {}  # each running task, and the session id it was sent in
        self._slots = asyncio.Semaphore(settings.TASKS_MAX_CONCURRENT)
        self._meters: dict[str, SessionMeter] = {}  # by session record id (unique per connection, so per process)
        self.ended = False

    def meter(self, session_id: str) -> SessionMeter:
        meter = self._meters.get(session_id)
        if meter is None:
            meter = self._meters[session_id] = SessionMeter(key=self.auth, session_id=session_id, dialect="tasks",
                                                            count_session_time=False)
        return meter

    def submit(self, task: dict, ctx: TaskContext) -> str | None:
        """Start a validated task; an error message (not started) when too many are pending."""
        if len(self.running) >= settings.TASKS_MAX_PENDING:
            return error_message("too_many_tasks", f"This session already has {settings.TASKS_MAX_PENDING} "
                                 "unfinished tasks; wait for results before sending more.",
                                 task_uuid=task["taskUUID"], task_type=task["taskType"])
        running = asyncio.create_task(self._run(task, ctx), name=f"task:{task['taskType']}:{task['taskUUID']}")
        self.running[running] = ctx.session_id
        running.add_done_callback(self._task_done)
        return None

    async def _run(self, task: dict, ctx: TaskContext) -> None:
        task_type, task_uuid = task["taskType"], task["taskUUID"]
        # Recorded while it runs: if this process dies, the client hears task_lost (inflight.py).
        await _tolerant(inflight.task_inflight_add(session_uuid=self.session_uuid, task_uuid=task_uuid,
                                                   task_type=task_type))
        async with self._slots:
            try:
                result = await HANDLERS[task_type](task, ctx)
            except TaskFailed as exc:
                message = error_message(exc.code, exc.message, task_uuid=task_uuid, task_type=task_type,
                                        parameter=exc.parameter)
            except Exception:
                logger.exception("task %s (%s) failed", task_uuid, task_type)
                message = error_message("internal_error", "The task failed inside the gateway.",
                                        task_uuid=task_uuid, task_type=task_type)
            else:
                message = data_message(task, result)
                if task_type not in UNMETERED:
                    meter = self.meter(ctx.session_id)
                    meter.add(f"tasks:{task_type}", 1)
                    try:
                        # Written before the result leaves: a process that dies after delivering still billed it.
                        await meter.flush()
                    except Exception:  # the periodic flush retries the same batch (idempotently)
                        logger.exception("usage flush failed for task %s", task_uuid)
        timeline_note(project_id=self.auth.project_id, session_id=ctx.session_id, direction="task",
                      event={"type": f"task.{task_type}", "task": task, "result": orjson.loads(message)})
        await self.publish(message)
        await _tolerant(inflight.task_inflight_done(session_uuid=self.session_uuid, task_uuid=task_uuid))

    async def publish(self, text: str) -> None:
        if self.links:
            # A connection is attached here: straight to it.
            await self.links[-1].deliver(text)
            return
        await task_outbox_push(session_uuid=self.session_uuid, text=text)
        await task_notice_send(kind="pending", session_uuid=self.session_uuid)

    def _task_done(self, task: asyncio.Task) -> None:
        self.running.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            logger.error("task runner %s crashed", task.get_name(), exc_info=task.exception())
        self._maybe_end()

    def _maybe_end(self) -> None:
        """Close the meters no connection or task uses any more; end once nothing is attached or running."""
        in_use = {link.session_id for link in self.links} | set(self.running.values())
        for session_id in [session_id for session_id in self._meters if session_id not in in_use]:
            closing = asyncio.get_running_loop().create_task(self._meters.pop(session_id).close(),
                                                             name=f"tasks-meter-close:{session_id}")
            _meters_closing.add(closing)
            closing.add_done_callback(_meters_closing.discard)
        if self.links or self.running or self.ended:
            return
        self.ended = True
        if _sessions.get(self.session_uuid) is self:
            del _sessions[self.session_uuid]


def task_session_attach(*, session_uuid: str, auth: ConnectionAuth, link: TaskLink) -> tuple[TaskSession, list[str]]:
    """This process's TaskSession for ``session_uuid`` (made if needed) with ``link`` as its connection,
    and the results earlier connections of it here had not confirmed (they step aside: the client
    resumed, so they are gone even if nobody noticed). The caller sends those, then takes the outbox,
    before ``link.deliver`` sends anything, so results keep their order."""
    session = _sessions.get(session_uuid)
    if session is None:
        session = _sessions[session_uuid] = TaskSession(session_uuid=session_uuid, auth=auth)
    handed_over: list[str] = []
    previous_links, session.links = session.links, [link]
    for previous in previous_links:
        handed_over.extend(previous.step_aside())
    return session, handed_over


def task_session_local(*, session_uuid: str) -> TaskSession | None:
    return _sessions.get(session_uuid)


def task_session_detach(*, session: TaskSession, link: TaskLink) -> None:
    if link in session.links:
        session.links.remove(link)
    session._maybe_end()
