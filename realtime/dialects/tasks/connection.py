"""The tasks dialect (seed 001) at ``ws /v1/``: a plain ASGI application (no Channels consumer, no
thread hop per message, no channel layer for a connection's own traffic).

The first message authenticates: ``{"newConnection": {"apiKey": …[, "connectionSessionUUID": …]}}``,
answered ``{"newConnectionSessionUUID": {"connectionSessionUUID": …}}`` (anything else first: an error
and close). Later messages are tasks, an object or an array of objects with ``taskType`` and
``taskUUID``. Results are ``{"data": [{taskType, taskUUID, …}]}``, errors
``{"errors": [{code, message[, taskUUID, taskType, parameter]}]}``; connection-level errors carry no
taskUUID and close with a 44xx code.

At least once: a result counts as delivered only once a WebSocket pong answers a ping sent after it
(realtime.gateway.outbox.PongProbe). Until then the connection keeps it; when the connection goes (or
a connection resuming the session takes over: a silent network drop is noticed by nobody) the
unconfirmed results go first to the resuming connection, or back to the front of the redelivery
buffer (realtime.dialects.tasks.buffer). A client may so see a result twice; ``taskUUID`` tells.

Every rule of the session (the cap, idle and duration limits, budget, revocation, the record) is the
lifecycle's (realtime.gateway.lifecycle); this module only speaks seed 001.
"""
from __future__ import annotations

import asyncio
import logging
import re
import uuid

import orjson
from django.conf import settings

from realtime.dialects.tasks import TaskContext
from realtime.dialects.tasks.buffer import (
    task_outbox_requeue,
    task_outbox_take,
    task_session_lookup,
    task_session_register,
    task_session_touch,
)
from realtime.dialects.tasks.inflight import TASK_LOST_MESSAGE, task_inflight_lost_claim
from realtime.dialects.tasks.notices import task_notice_send, task_notices_listen
from realtime.dialects.tasks.runner import (
    HANDLERS,
    INSTANT,
    TaskSession,
    error_message,
    instant_result,
    task_session_attach,
    task_session_detach,
)
from realtime.gateway import availability, drain, limits, liveness
from realtime.gateway.auth import AuthFailed, ConnectionAuth, origin_check, scope_header
from realtime.gateway.background import tasks_stop
from realtime.gateway.lifecycle import SessionLifecycle, SessionRefused, session_admit
from realtime.gateway.limits import (
    CLOSE_BAD_REQUEST,
    CLOSE_EXPIRED,
    CLOSE_FORBIDDEN,
    CLOSE_IDLE,
    CLOSE_REPLACED,
    CLOSE_UNAUTHORIZED,
    ClientGate,
    GatewayError,
)
from realtime.gateway.outbox import ClientOutbox, ClientTooSlow, PongProbe

logger = logging.getLogger(__name__)

UUID_PATTERN = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Results sent within this long share one ping: a ping per result would double the frames of a busy
# connection (bench/README.md, "Dialects").
PROBE_DELAY_SECONDS = 0.05
SESSION_REPLACED = GatewayError("session_replaced", "Another connection resumed this session.", CLOSE_REPLACED)

# Connections of this process, by task session (for notices from other processes).
_connections: dict[str, TasksConnection] = {}


def _error(code: str, message: str, close_code: int | None = None) -> GatewayError:
    return GatewayError(code, message, close_code)


def _public_base_url(scope) -> str:
    host = scope_header(scope, b"host")
    if not host:
        return settings.SITE_URL
    return f"{'https' if scope.get('scheme') == 'wss' else 'http'}://{host}"


def _task_error(task: dict, code: str, message: str, parameter: str | None = None) -> str:
    task_uuid = task.get("taskUUID") if isinstance(task.get("taskUUID"), str) else None
    task_type = task.get("taskType") if isinstance(task.get("taskType"), str) else None
    return error_message(code, message, task_uuid=task_uuid, task_type=task_type, parameter=parameter)


def _task_problem(task) -> str | None:
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


def _on_notice(kind: str, session_uuid: str) -> None:
    connection = _connections.get(session_uuid)
    if connection is None:
        return
    if kind == "pending":
        connection.take_outbox_soon()
    elif kind == "takeover":  # resumed in another process: this connection is stale
        connection.spawn(connection.leave(), "tasks-takeover")


class TasksConnection:
    """One client connection: parses frames, calls the runner and the lifecycle, renders errors."""

    def __init__(self, scope, send):
        self.scope = scope
        self.auth: ConnectionAuth | None = None
        self.session_uuid: str | None = None
        self.task_session: TaskSession | None = None
        self.context: TaskContext | None = None
        self.lifecycle: SessionLifecycle | None = None
        self.gate = ClientGate(max_bytes=settings.TASKS_MAX_FRAME_BYTES)
        self.outbox = ClientOutbox(send, limit_bytes=settings.REALTIME_CLIENT_BUFFER_BYTES, on_abandon=self._abandon)
        self.probe = PongProbe.of(send)
        self.closing = False
        self.close_reason = "client_closed"
        self._held: list[str] | None = None  # results arriving while the outbox is taken, sent after it
        self._unconfirmed: list[str] = []  # sent, not yet proven delivered by a pong
        self._probing = False
        self._probe_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()
        self._main: asyncio.Task | None = None
        self._ending = False  # _end has begun: nothing new starts (it would outlive the connection)

    def spawn(self, coro, name: str) -> None:
        if self._ending:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro, name=f"{name}:{id(self):x}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- Connection ---------------------------------------------------------------------------------

    async def run(self, receive) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        self._main = asyncio.current_task()
        await self.outbox.accept(None, name=f"tasks-outbox:{id(self):x}")
        _live.add(self)  # told why on SIGTERM (realtime/gateway/drain.py)
        try:
            try:
                origin_check(self.scope)
            except AuthFailed as exc:
                self.refuse(exc.error)
            else:
                self.spawn(self._authentication_deadline(), "tasks-auth-deadline")
            while True:
                message = await receive()
                if message["type"] == "websocket.receive":
                    await self._receive(message.get("text"))
                elif message["type"] == "websocket.disconnect":
                    break
        except asyncio.CancelledError:
            if not self.outbox.abandoned:
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()  # our own: the client stopped reading (see _abandon)
        finally:
            await self._end()

    def _abandon(self) -> None:
        if self._main is not None:
            self._main.cancel()

    async def _authentication_deadline(self) -> None:
        await asyncio.sleep(settings.TASKS_AUTH_TIMEOUT_SECONDS)
        if self.auth is None:
            self.refuse(_error("authentication_timeout", "Send newConnection first, within "
                               f"{settings.TASKS_AUTH_TIMEOUT_SECONDS:g} seconds.", CLOSE_IDLE))

    def refuse(self, error: GatewayError, *, reason: str | None = None) -> None:
        """Say why, then close (frames still in flight are not run)."""
        if self.closing:
            return
        self.closing = True
        self.close_reason = reason or error.code
        self.outbox.push(error_message(error.code, error.message), bounded=False)
        self.outbox.close(code=error.close_code or CLOSE_BAD_REQUEST, reason=error.code)

    def _say(self, text: str) -> None:
        self.outbox.push(text, bounded=False)

    # --- Frames -------------------------------------------------------------------------------------

    async def _receive(self, text: str | None) -> None:
        if self.closing:
            return
        if self.lifecycle is not None:
            self.lifecycle.touch()
        message, problem = self.gate.parse(text)
        if problem is not None:
            # Before authentication anything but newConnection ends the connection; after it, only the frame is lost.
            if self.auth is None:
                self.refuse(_error(problem.code, problem.message, CLOSE_BAD_REQUEST))
            else:
                self._say(error_message(problem.code, problem.message))
            return
        if self.auth is None:
            try:
                await self._new_connection(message)
            except SessionRefused as exc:
                self.refuse(exc.error)
            return
        tasks = message if isinstance(message, list) else [message]
        if not tasks:  # an empty array would otherwise go unanswered
            self._say(error_message("invalid_task", "A message holds a task or an array of at least one task."))
            return
        if len(tasks) > settings.TASKS_MAX_PENDING:
            self._say(error_message("too_many_tasks", f"At most {settings.TASKS_MAX_PENDING} tasks a message."))
            return
        for task in tasks:
            problem_text = _task_problem(task)
            if problem_text is not None:
                self._say(problem_text)
                continue
            if self.task_session is None or self.context is None:  # stepped aside for a resuming connection
                return
            if task["taskType"] in INSTANT:
                await self.deliver(instant_result(task))
                continue
            refused = self.task_session.submit(task, self.context)
            if refused is not None:
                self._say(refused)

    # --- Authentication and resume ------------------------------------------------------------------

    async def _new_connection(self, message) -> None:
        request = message.get("newConnection") if isinstance(message, dict) else None
        if not isinstance(request, dict):
            raise SessionRefused(_error("authentication_required",
                                        'The first message must be {"newConnection": {"apiKey": "<APIKEY>"}}.',
                                        CLOSE_UNAUTHORIZED))
        api_key = request.get("apiKey")
        try:
            auth = await session_admit(api_key=api_key if isinstance(api_key, str) else "")
        except AuthFailed as exc:
            raise SessionRefused(_error(exc.error.code, exc.error.message,
                                        exc.error.close_code or CLOSE_UNAUTHORIZED)) from None
        session_uuid = request.get("connectionSessionUUID")
        resumed = session_uuid is not None
        if resumed:
            if not isinstance(session_uuid, str) or not UUID_PATTERN.match(session_uuid):
                raise SessionRefused(_error("invalid_session_uuid", "connectionSessionUUID must be a UUID.",
                                            CLOSE_BAD_REQUEST))
            session_uuid = session_uuid.lower()
            owner = await task_session_lookup(session_uuid=session_uuid)
            # Another project's session answers as an unknown one: ids reveal nothing across tenants.
            if owner is None or owner.project_id != auth.project_id:
                raise SessionRefused(_error(
                    "session_expired", "This connectionSessionUUID is unknown or its buffer has expired; "
                    "connect without it to start a new session.", CLOSE_EXPIRED))
            if owner.key_id != auth.key_id:
                raise SessionRefused(_error("session_forbidden", "This connectionSessionUUID belongs to another "
                                            "API key of this project.", CLOSE_FORBIDDEN))
        else:
            session_uuid = str(uuid.uuid4())
            await task_session_register(session_uuid=session_uuid, project_id=auth.project_id, key_id=auth.key_id)
        lifecycle = SessionLifecycle(auth=auth, dialect="tasks", session_id=f"tasks:{uuid.uuid4().hex}",
                                     client_key=session_uuid)
        await lifecycle.start()  # the cap, the revocation watch, the record (raises SessionRefused)
        lifecycle.on_revoked = lambda: self.refuse(limits.KEY_REVOKED)
        self.lifecycle = lifecycle
        self.auth, self.session_uuid = auth, session_uuid
        self.context = TaskContext(auth=auth, public_base_url=_public_base_url(self.scope),
                                   session_id=lifecycle.session_id)
        self.scope = None
        # Results reaching this connection directly wait until the handed-over and buffered ones are out.
        self._held = []
        self.task_session, handed_over = task_session_attach(session_uuid=session_uuid, auth=auth, link=self)
        previous = _connections.get(session_uuid)
        _connections[session_uuid] = self
        if previous is not None and previous is not self:
            previous.close_reason = SESSION_REPLACED.code
        task_notices_listen(_on_notice)
        if resumed:
            await task_notice_send(kind="takeover", session_uuid=session_uuid)
        self._say(orjson.dumps({"newConnectionSessionUUID": {"connectionSessionUUID": session_uuid}}).decode())
        for text in handed_over:
            self._send_result(text)
        await self._take_outbox()
        await self._send_lost_tasks()
        self.spawn(self._keep_alive(), "tasks-keep-alive")
        lifecycle.watch(warn=self._warn, close=self._lifecycle_close)

    async def _take_outbox(self) -> None:
        assert self.session_uuid is not None  # authenticated
        try:
            taken = await task_outbox_take(session_uuid=self.session_uuid)
        except Exception:  # Redis briefly away: taken on the next notice or lease refresh
            logger.warning("tasks: could not take the outbox of %s", self.session_uuid, exc_info=True)
            taken = []
        held, self._held = self._held or [], None
        for text in [*taken, *held]:
            self._send_result(text)

    def take_outbox_soon(self) -> None:
        if self._held is None and not self.closing and not self._ending:
            self._held = []
            self.spawn(self._take_outbox(), "tasks-take-outbox")

    async def _keep_alive(self) -> None:
        """While connected, the session and its buffer stay leased, tasks of a process that died come
        back as ``task_lost`` within seconds of its heartbeat lapsing (liveness.py), and anything
        buffered is taken (a lost ``pending`` notice delays a result by at most this interval)."""
        interval = min(settings.TASKS_BUFFER_SECONDS / 3, liveness.LEASE_SECONDS / 3)
        assert self.session_uuid is not None  # authenticated
        while True:
            await asyncio.sleep(interval)
            try:
                await task_session_touch(session_uuid=self.session_uuid)
                await self._send_lost_tasks()
            except Exception as exc:
                availability.failure_logged(logger, "lease refresh failed for task session %s", exc, self.session_uuid)
            self.take_outbox_soon()

    async def _send_lost_tasks(self) -> None:
        """Tasks of this session whose process died: an error each, never silence."""
        assert self.session_uuid is not None  # authenticated
        for task_uuid, task_type in await task_inflight_lost_claim(session_uuid=self.session_uuid):
            self._say(error_message("task_lost", TASK_LOST_MESSAGE, task_uuid=task_uuid, task_type=task_type))

    async def _warn(self, error: GatewayError) -> None:
        self._say(error_message(error.code, error.message))

    async def _lifecycle_close(self, reason: str, error: GatewayError | None) -> None:
        self.refuse(error or _error(reason, reason, 1000), reason=reason)

    # --- Results (TaskLink) -------------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        """The gateway's id of this connection's session: its record, usage and timeline."""
        return self.lifecycle.session_id if self.lifecycle is not None else ""

    async def deliver(self, text: str) -> None:
        """A result of this session produced in this process (called by the task runner)."""
        if self._held is not None:
            self._held.append(text)
            return
        self._send_result(text)

    def _send_result(self, text: str) -> None:
        self._unconfirmed.append(text)
        if self.closing:
            return  # kept unconfirmed: given back when the connection ends
        if self.lifecycle is not None:
            self.lifecycle.touch()
        try:
            self.outbox.push(text)
        except ClientTooSlow:
            self.refuse(limits.CLIENT_TOO_SLOW)
            return
        self._probe()

    def _probe(self) -> None:
        """Ping after the results sent so far; the pong confirms them."""
        if self._probing or not self._unconfirmed:
            return
        if self.probe is None:  # a server without pings: handed over counts as delivered
            self._unconfirmed.clear()
            return
        self._probing = True
        self._probe_timer = asyncio.get_running_loop().call_later(PROBE_DELAY_SECONDS, self._ping)

    def _ping(self) -> None:
        """Queued behind every result sent so far: the pong confirms exactly those."""
        self._probe_timer = None
        count = len(self._unconfirmed)
        probe = self.probe
        if self.closing or probe is None:
            return
        self.outbox.call_in_order(lambda: probe.ping(lambda: self._confirmed(count)))

    def _confirmed(self, count: int) -> None:
        del self._unconfirmed[:count]
        self._probing = False
        if not self.closing:
            self._probe()

    def step_aside(self) -> list[str]:
        """A connection resuming this session replaces this one (which may be silently dead)."""
        unconfirmed, self._unconfirmed = self._unconfirmed, []
        if self.task_session is not None:  # its meter closes once its tasks are done
            task_session_detach(session=self.task_session, link=self)
        self.task_session = None  # nothing more reaches this connection
        self.refuse(SESSION_REPLACED)
        return unconfirmed

    async def leave(self) -> None:
        """Replaced from another process: give the unconfirmed results back, and close."""
        unconfirmed = self.step_aside()
        if unconfirmed and self.session_uuid is not None:
            await task_outbox_requeue(session_uuid=self.session_uuid, texts=unconfirmed)
            await task_notice_send(kind="pending", session_uuid=self.session_uuid)

    # --- End ----------------------------------------------------------------------------------------

    async def _end(self) -> None:
        self._ending = True
        _live.discard(self)
        if self._probe_timer is not None:
            self._probe_timer.cancel()
        await self.outbox.stop()
        # Every helper has ended before the results, the buffer lease and the record are settled: a
        # keep-alive still running could take the buffered results after they were put back.
        await tasks_stop(list(self._tasks))
        if self.session_uuid is not None and _connections.get(self.session_uuid) is self:
            del _connections[self.session_uuid]
        unconfirmed, self._unconfirmed = self._unconfirmed, []
        if self.task_session is not None:
            task_session_detach(session=self.task_session, link=self)
            self.task_session = None
        try:
            if self.session_uuid is not None:
                # Undelivered results wait for a resume; the redelivery window starts now.
                await task_outbox_requeue(session_uuid=self.session_uuid, texts=unconfirmed)
                await task_session_touch(session_uuid=self.session_uuid)
                if unconfirmed:
                    await task_notice_send(kind="pending", session_uuid=self.session_uuid)
        except Exception:
            logger.exception("tasks: could not keep the undelivered results of %s", self.session_uuid)
        if self.lifecycle is not None:
            await self.lifecycle.release(reason=self.close_reason)


def tasks_application():
    """The ASGI application of the tasks route."""

    async def application(scope, receive, send):
        await TasksConnection(scope, send).run(receive)

    return application


_live: set[TasksConnection] = set()

SHUTTING_DOWN = ("This gateway process is shutting down. Reconnect with your connectionSessionUUID: results of "
                 "finished tasks wait for you; tasks still running here come back as task_lost errors.")


async def _drain() -> None:
    from realtime.dialects.tasks import runner

    for connection in list(_live):
        connection.refuse(_error("server_shutting_down", SHUTTING_DOWN, availability.CLOSE_SERVICE_RESTART))
    await asyncio.gather(*list(runner._meters_closing), return_exceptions=True)  # usage flushed before exit


drain.drain_hook("tasks", _drain)
