"""The tasks dialect (seed 001) at ``ws /v1/``.

The first message authenticates: ``{"newConnection": {"apiKey": …[, "connectionSessionUUID": …]}}``,
answered ``{"newConnectionSessionUUID": {"connectionSessionUUID": …}}`` (anything else first: an error
and close). Later messages are tasks, an object or an array of objects with ``taskType`` and
``taskUUID``. Results are ``{"data": [{taskType, taskUUID, …}]}``, errors
``{"errors": [{code, message[, taskUUID, taskType, parameter]}]}``; connection-level errors carry no
taskUUID and close with a 44xx code. Results produced while no connection is attached wait in the
redelivery buffer (realtime.dialects.tasks.buffer) until a connection of the same key resumes the session, in
this process or another.
"""
from __future__ import annotations

import asyncio
import logging
import re
import uuid

import orjson
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from accounts.notify import key_group
from realtime.dialects.tasks import TaskContext
from realtime.dialects.tasks.buffer import (
    task_outbox_take,
    task_session_lookup,
    task_session_register,
    task_session_touch,
)
from realtime.dialects.tasks.inflight import TASK_LOST_MESSAGE, task_inflight_lost_claim
from realtime.dialects.tasks.runner import (
    HANDLERS,
    TaskSession,
    error_message,
    session_group,
    task_session_attach,
    task_session_detach,
)
from realtime.gateway import availability, drain, limits
from realtime.gateway.auth import AuthFailed, api_key_authenticate, origin_check, scope_header
from realtime.gateway.budgets import budget_watch
from realtime.gateway.limits import (
    CLOSE_BAD_REQUEST,
    CLOSE_EXPIRED,
    CLOSE_FORBIDDEN,
    CLOSE_IDLE,
    CLOSE_UNAUTHORIZED,
    KEY_REVOKED,
    ClientGate,
    GatewayError,
)

logger = logging.getLogger(__name__)

UUID_PATTERN = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class Refused(Exception):
    def __init__(self, code: str, message: str, close_code: int):
        self.code, self.message, self.close_code = code, message, close_code
        super().__init__(code)


def _public_base_url(scope) -> str:
    host = scope_header(scope, b"host")
    if not host:
        return settings.SITE_URL
    return f"{'https' if scope.get('scheme') == 'wss' else 'http'}://{host}"


def _task_error(task: dict, code: str, message: str, parameter: str | None = None) -> str:
    task_uuid = task.get("taskUUID") if isinstance(task.get("taskUUID"), str) else None
    task_type = task.get("taskType") if isinstance(task.get("taskType"), str) else None
    return error_message(code, message, task_uuid=task_uuid, task_type=task_type, parameter=parameter)


class TasksConsumer(AsyncWebsocketConsumer):
    """Parses frames, calls the task runner and the buffer, renders errors."""

    async def connect(self):
        self.auth = None
        self.session_uuid: str | None = None
        self.task_session: TaskSession | None = None
        self.context: TaskContext | None = None
        self.gate = ClientGate()
        self.gate.max_bytes = settings.TASKS_MAX_FRAME_BYTES
        self._send_lock = asyncio.Lock()
        self.refused = False
        self._background: list[asyncio.Task] = []
        await self.accept()
        _live.add(self)  # told why on SIGTERM (realtime/gateway/drain.py)
        try:
            origin_check(self.scope)
        except AuthFailed as exc:
            await self._refuse(Refused(exc.error.code, exc.error.message, exc.error.close_code))
            return
        self._spawn(self._authentication_deadline(), "tasks-auth-deadline")

    def _spawn(self, coro, name: str) -> None:
        self._background.append(asyncio.create_task(coro, name=f"{name}:{self.channel_name}"))

    async def _authentication_deadline(self) -> None:
        await asyncio.sleep(settings.TASKS_AUTH_TIMEOUT_SECONDS)
        if self.auth is None:
            await self._refuse(Refused("authentication_timeout", "Send newConnection first, within "
                                       f"{settings.TASKS_AUTH_TIMEOUT_SECONDS:g} seconds.", CLOSE_IDLE))

    async def _refuse(self, refusal: Refused) -> None:
        self.refused = True
        await self.send(error_message(refusal.code, refusal.message))
        await self.close(code=refusal.close_code)

    # --- Frames -------------------------------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        if self.refused:
            return  # closing: frames still in flight are not run
        if text_data is None:
            problem = Refused("binary_not_supported", "Send JSON text frames.", CLOSE_BAD_REQUEST)
        else:
            refusal = self.gate.check(text_data)
            problem = Refused(refusal.code, refusal.message, CLOSE_BAD_REQUEST) if refusal else None
        if problem is not None:
            # Before authentication anything but newConnection ends the connection; after it, only the frame is lost.
            if self.auth is None:
                await self._refuse(problem)
            else:
                await self.send(error_message(problem.code, problem.message))
            return
        try:
            message = orjson.loads(text_data)
        except orjson.JSONDecodeError:
            if self.auth is None:
                await self._refuse(Refused("invalid_json", "The message is not valid JSON.", CLOSE_BAD_REQUEST))
            else:
                await self.send(error_message("invalid_json", "The message is not valid JSON; nothing was run."))
            return
        if self.auth is None:
            try:
                await self._new_connection(message)
            except Refused as exc:
                await self._refuse(exc)
            return
        tasks = message if isinstance(message, list) else [message]
        if not tasks:  # an empty array would otherwise go unanswered
            await self.send(error_message("invalid_task", "A message holds a task or an array of at least one task."))
            return
        if len(tasks) > settings.TASKS_MAX_PENDING:
            await self.send(error_message("too_many_tasks", f"At most {settings.TASKS_MAX_PENDING} tasks a message."))
            return
        for task in tasks:
            problem = self._task_problem(task)
            if problem is not None:
                await self.send(problem)
                continue
            refused = self.task_session.submit(task, self.context)
            if refused is not None:
                await self.send(refused)

    def _task_problem(self, task) -> str | None:
        if not isinstance(task, dict):
            return error_message("invalid_task", "A task is a JSON object with taskType and taskUUID.")
        if "newConnection" in task:
            return error_message("already_authenticated", "This connection is already authenticated.")
        task_uuid = task.get("taskUUID")
        if not isinstance(task_uuid, str) or not UUID_PATTERN.match(task_uuid):
            return _task_error(task, "invalid_task_uuid", "taskUUID must be a UUID string.", "taskUUID")
        task_type = task.get("taskType")
        if not isinstance(task_type, str) or not task_type:
            return _task_error(task, "missing_task_type", "taskType is required.", "taskType")
        if task_type not in HANDLERS:
            return _task_error(task, "unknown_task_type", f"Unknown taskType {task_type[:60]!r}.", "taskType")
        return None

    # --- Authentication and resume ------------------------------------------------------------------

    async def _new_connection(self, message) -> None:
        request = message.get("newConnection") if isinstance(message, dict) else None
        if not isinstance(request, dict):
            raise Refused("authentication_required",
                          'The first message must be {"newConnection": {"apiKey": "<APIKEY>"}}.', CLOSE_UNAUTHORIZED)
        api_key = request.get("apiKey")
        try:
            auth = await api_key_authenticate(raw=api_key if isinstance(api_key, str) else None)
        except AuthFailed as exc:
            raise Refused(exc.error.code, exc.error.message, exc.error.close_code or CLOSE_UNAUTHORIZED) from None
        session_uuid = request.get("connectionSessionUUID")
        if session_uuid is not None:
            if not isinstance(session_uuid, str) or not UUID_PATTERN.match(session_uuid):
                raise Refused("invalid_session_uuid", "connectionSessionUUID must be a UUID.", CLOSE_BAD_REQUEST)
            session_uuid = session_uuid.lower()
            owner = await task_session_lookup(session_uuid=session_uuid)
            if owner is None:
                raise Refused("session_expired", "This connectionSessionUUID is unknown or its buffer has expired; "
                              "connect without it to start a new session.", CLOSE_EXPIRED)
            if (owner.project_id, owner.key_id) != (auth.project_id, auth.key_id):
                raise Refused("session_forbidden", "This connectionSessionUUID belongs to another API key.",
                              CLOSE_FORBIDDEN)
        else:
            session_uuid = str(uuid.uuid4())
            await task_session_register(session_uuid=session_uuid, project_id=auth.project_id, key_id=auth.key_id)
        if not await limits.session_slot_acquire(key_id=auth.key_id, session_id=f"tasks:{self.channel_name}",
                                                 limit=settings.REALTIME_MAX_SESSIONS_PER_KEY):
            raise Refused(limits.TOO_MANY_SESSIONS.code, limits.TOO_MANY_SESSIONS.message,
                          limits.TOO_MANY_SESSIONS.close_code)
        self.auth, self.session_uuid = auth, session_uuid
        self.context = TaskContext(auth=auth, public_base_url=_public_base_url(self.scope))
        # Held until the outbox is taken, so a result sent directly never overtakes a buffered one.
        async with self._send_lock:
            self.task_session = task_session_attach(session_uuid=session_uuid, auth=auth, deliver=self._deliver)
            # Join before taking the outbox: a result another process buffers after this is announced to us.
            for group in (session_group(session_uuid), key_group(auth.pk)):
                self.groups.append(group)
                await self.channel_layer.group_add(group, self.channel_name)
            await self.send(orjson.dumps({"newConnectionSessionUUID": {"connectionSessionUUID": session_uuid}}).decode())
            await self._send_outbox()
            await self._send_lost_tasks()
        self._spawn(self._keep_alive(), "tasks-keep-alive")
        self._spawn(budget_watch(auth=auth, warn=self._budget_warn, close=self._budget_close), "tasks-budget-watch")

    async def _keep_alive(self) -> None:
        """While connected, the session, its buffer and the concurrency slot stay leased."""
        interval = min(settings.TASKS_BUFFER_SECONDS, limits.SLOT_TTL) / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await task_session_touch(session_uuid=self.session_uuid)
                await limits.session_slot_acquire(key_id=self.auth.key_id, session_id=f"tasks:{self.channel_name}",
                                                  limit=settings.REALTIME_MAX_SESSIONS_PER_KEY)
                async with self._send_lock:
                    await self._send_lost_tasks()
            except Exception as exc:
                availability.failure_logged(logger, "lease refresh failed for task session %s", exc, self.session_uuid)

    async def _budget_warn(self, error: GatewayError) -> None:
        async with self._send_lock:
            await self.send(error_message(error.code, error.message))

    async def _budget_close(self, error: GatewayError) -> None:
        await self._refuse(Refused(error.code, error.message, error.close_code))

    async def _send_outbox(self) -> None:
        for text in await task_outbox_take(session_uuid=self.session_uuid):
            await self.send(text)

    async def _send_lost_tasks(self) -> None:
        """Tasks of this session whose process died: an error each, never silence."""
        for task_uuid, task_type in await task_inflight_lost_claim(session_uuid=self.session_uuid):
            await self.send(error_message("task_lost", TASK_LOST_MESSAGE, task_uuid=task_uuid, task_type=task_type))

    async def _deliver(self, text: str) -> None:
        """A result of this session produced in this process (called by the task runner)."""
        async with self._send_lock:
            await self.send(text)

    # --- Channel-layer messages ---------------------------------------------------------------------

    async def tasks_pending(self, message):
        """Another process buffered a result of this session."""
        if self.session_uuid is not None:
            async with self._send_lock:
                await self._send_outbox()

    async def key_revoked(self, message):
        await self._refuse(Refused(KEY_REVOKED.code, KEY_REVOKED.message, KEY_REVOKED.close_code))

    # --- End ----------------------------------------------------------------------------------------

    async def disconnect(self, code):
        _live.discard(self)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.task_session is not None:
            task_session_detach(session=self.task_session, deliver=self._deliver)
            self.task_session = None
            try:
                await limits.session_slot_release(key_id=self.auth.key_id, session_id=f"tasks:{self.channel_name}")
                # The redelivery window starts now.
                await task_session_touch(session_uuid=self.session_uuid)
            except Exception:
                logger.exception("release failed for task session %s", self.session_uuid)


_live: set[TasksConsumer] = set()

SHUTTING_DOWN = ("This gateway process is shutting down. Reconnect with your connectionSessionUUID: results of "
                 "finished tasks wait for you; tasks still running here come back as task_lost errors.")


async def _drain() -> None:
    from realtime.dialects.tasks import runner

    for consumer in list(_live):
        if not consumer.refused:
            await consumer._refuse(Refused("server_shutting_down", SHUTTING_DOWN, availability.CLOSE_SERVICE_RESTART))
    await asyncio.gather(*list(runner._meters_closing), return_exceptions=True)  # usage flushed before exit


drain.drain_hook("tasks", _drain)
