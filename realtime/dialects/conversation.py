"""The conversation dialect (seed 002) at ``ws /v1/conversation?apiKey=…&deploymentKey=…&channelKey=…-en-US
[&conversationId=…]``.

On connect: ``{"conversationId": …}``. A ConversationRequest ``{"request": {"unstructured": {"text"}},
"userId"}`` becomes a user message item and a ``response.create`` (text modality) on a GatewaySession
with the deployment's agent, and its reply comes back as a ConversationResponse ``{"messages": [{"text",
"type": "text", "messageId"}], "conversationId"}``. Requests are answered one at a time, in order.
Turns are stored (after the answer leaves, in order, by one writer task: the answer never waits on the
database); resuming with ``conversationId`` replays them to the agent first. Errors:
``{"error": {"code", "message"}[, "conversationId"]}``; refusals of the connection then close with a
44xx/45xx code. Closing the socket closes the upstream session.

A plain ASGI application (no Channels consumer, no thread hop per message); every session rule is the
lifecycle's (realtime.gateway.lifecycle, held by the GatewaySession), only seed 002 is spoken here.
"""
from __future__ import annotations

import asyncio
import logging
import re
import uuid

import orjson
from channels.db import database_sync_to_async
from django.conf import settings

from realtime.dialects.conversation_store import (
    ConversationNotFound,
    conversation_exchange_turns,
    conversation_history,
    conversation_open,
    conversation_turns_save,
)
from realtime.gateway.auth import AuthFailed, scope_query
from realtime.gateway.background import tasks_stop
from realtime.gateway.lifecycle import session_admit
from realtime.gateway.limits import (
    CLOSE_BAD_REQUEST,
    CLOSE_INTERNAL,
    CLOSE_NOT_FOUND,
    CLOSE_UNAUTHORIZED,
    ClientGate,
    GatewayError,
)
from realtime.gateway.outbox import ClientOutbox
from realtime.gateway.session import GatewaySession, SessionRefused, session_connect

logger = logging.getLogger(__name__)

CHANNEL_KEY = re.compile(r"^(?P<channel>[A-Za-z0-9_.\-]{1,80})-(?P<language>[a-z]{2,3}-[A-Z]{2})$")
TEXT_ONLY = orjson.dumps({"type": "session.update", "event_id": "sb_conversation_text",
                          "session": {"type": "realtime", "output_modalities": ["text"]}}).decode()


def _refusal(code: str, message: str, close_code: int) -> SessionRefused:
    return SessionRefused(GatewayError(code, message, close_code))


def _item_event(role: str, text: str) -> tuple[str, dict]:
    part = "input_text" if role == "user" else "output_text"
    event = {"type": "conversation.item.create",
             "item": {"type": "message", "role": role, "content": [{"type": part, "text": text}]}}
    return orjson.dumps(event).decode(), event


class _Reply:
    """What the agent says for one request, gathered from its events until response.done."""

    def __init__(self):
        self.texts: list[str] = []
        self.pending = ""
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    def finish(self, *, error: GatewayError | None = None) -> None:
        if self.pending:
            self.texts.append(self.pending)
            self.pending = ""
        if not self.done.done():
            self.done.set_result(error)


class ConversationConnection:
    def __init__(self, scope, send):
        self.scope = scope
        self.session: GatewaySession | None = None
        self.conversation = None
        self.gate = ClientGate()
        self.requests: asyncio.Queue = asyncio.Queue(maxsize=settings.CONVERSATION_MAX_PENDING)
        self.reply: _Reply | None = None
        self.worker: asyncio.Task | None = None
        self.writer: asyncio.Task | None = None
        self._writes: asyncio.Queue = asyncio.Queue()
        self.outbox = ClientOutbox(send, limit_bytes=settings.REALTIME_CLIENT_BUFFER_BYTES, on_abandon=self._abandon)
        self._main: asyncio.Task | None = None

    def _abandon(self) -> None:
        if self._main is not None:
            self._main.cancel()

    async def run(self, receive) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        self._main = asyncio.current_task()
        close_code = None
        # Accept first so a refusal can say why (an error message, then a close code).
        await self.outbox.accept(None, name=f"conversation-outbox:{id(self):x}")
        try:
            await self._connect()
            while True:
                message = await receive()
                if message["type"] == "websocket.receive":
                    await self.receive(message.get("text"))
                elif message["type"] == "websocket.disconnect":
                    close_code = message.get("code")
                    break
        except asyncio.CancelledError:
            if not self.outbox.abandoned:
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
        finally:
            await self.outbox.stop()
            await self.disconnect(close_code)

    async def _connect(self) -> None:
        try:
            auth, deployment_key, conversation_id = await self._parameters()
            self.conversation, resumed = await self._open(auth, deployment_key, conversation_id)
            self.session = await session_connect(auth=auth, link=self, dialect="conversation",
                                                 deployment_key=deployment_key, server=self.scope.get("server"))
        except (AuthFailed, SessionRefused) as exc:
            await self.report(exc.error)
            await self.end(code=exc.error.close_code or CLOSE_BAD_REQUEST, reason=exc.error.code)
            return
        self.scope = None
        await self.session.from_client(TEXT_ONLY, {"type": "session.update"})
        if resumed:
            history = await database_sync_to_async(conversation_history)(conversation_pk=self.conversation.pk)
            for role, text in history:
                await self.session.from_client(*_item_event(role, text))
        self.send(orjson.dumps({"conversationId": str(self.conversation.conversation_id)}).decode())
        self.worker = asyncio.create_task(self._answer_requests(), name=f"conversation:{self.conversation.conversation_id}")
        self.worker.add_done_callback(self._worker_done)
        self.writer = asyncio.create_task(self._write_exchanges(), name=f"conversation-writer:{id(self):x}")

    async def _write_exchanges(self) -> None:
        """Exchanges answered while a write was under way share the next transaction (in order): the
        writes keep up with a busy conversation at one transaction per write, not per exchange."""
        pk = self.conversation.pk
        while True:
            batch = [await self._writes.get()]
            while not self._writes.empty():
                batch.append(self._writes.get_nowait())
            exchanges = [exchange for exchange in batch if exchange is not None]
            turns = [turn for exchange in exchanges for turn in exchange]
            if turns:
                try:
                    await database_sync_to_async(conversation_turns_save)(conversation_pk=pk, turns=turns)
                except Exception:  # the database is away: the client has its answer; the history misses it
                    logger.exception("conversation %s: %d exchange(s) could not be stored",
                                     self.conversation.conversation_id, len(exchanges))
            if len(exchanges) < len(batch):  # the end-of-connection mark: every answered exchange is written
                return

    def send(self, text: str) -> None:
        self.outbox.push(text, bounded=False)

    def _worker_done(self, task: asyncio.Task) -> None:
        """A worker that dies of a bug (or a database failure) must not leave requests hanging unanswered."""
        if task.cancelled() or task.exception() is None or self.session is None:
            return
        logger.error("conversation %s: worker failed", self.conversation.conversation_id, exc_info=task.exception())
        error = GatewayError("internal_error", "The gateway failed; the conversation was closed.", CLOSE_INTERNAL,
                             "server_error")
        self.session.close_soon(reason="internal_error", error=error)

    async def _parameters(self):
        query = scope_query(self.scope)
        if not query.get("apiKey"):
            raise _refusal("missing_api_key", "The apiKey query parameter is required.", CLOSE_UNAUTHORIZED)
        auth = await session_admit(scope=self.scope, api_key=query["apiKey"])
        deployment_key = query.get("deploymentKey", "")
        if not deployment_key:
            raise _refusal("missing_deployment_key", "The deploymentKey query parameter is required.", CLOSE_BAD_REQUEST)
        channel_key = query.get("channelKey", "")
        if not channel_key:
            raise _refusal("missing_channel_key", "The channelKey query parameter is required.", CLOSE_BAD_REQUEST)
        match = CHANNEL_KEY.match(channel_key)
        if match is None:
            raise _refusal("invalid_channel_key", "channelKey must end with a language suffix, e.g. web-en-US.",
                           CLOSE_BAD_REQUEST)
        self.channel, self.language = match.group("channel"), match.group("language")
        conversation_id = query.get("conversationId")
        if conversation_id is not None:
            try:
                conversation_id = uuid.UUID(conversation_id)
            except ValueError:
                raise _refusal("invalid_conversation_id", "conversationId must be a UUID.", CLOSE_BAD_REQUEST) from None
        return auth, deployment_key, conversation_id

    async def _open(self, auth, deployment_key, conversation_id):
        try:
            return await database_sync_to_async(conversation_open)(
                auth=auth, deployment_key=deployment_key, channel_key=self.channel, language=self.language,
                conversation_id=conversation_id)
        except ConversationNotFound as exc:
            if exc.what == "deployment":
                raise _refusal("deployment_not_found", "No such deployment in this key's environment.",
                               CLOSE_NOT_FOUND) from None
            raise _refusal("conversation_not_found", "No such conversation for this key and deployment.",
                           CLOSE_NOT_FOUND) from None

    # --- Client messages ----------------------------------------------------------------------------

    async def receive(self, text_data: str | None) -> None:
        if self.session is None or self.session.closed:
            return
        message, refusal = self.gate.parse(text_data)
        if refusal is not None:
            await self.report(refusal)
            return
        request = message.get("request") if isinstance(message, dict) else None
        unstructured = request.get("unstructured") if isinstance(request, dict) else None
        text = unstructured.get("text") if isinstance(unstructured, dict) else None
        if not isinstance(text, str) or not text.strip():
            await self.report(GatewayError(
                "invalid_request", 'A ConversationRequest is {"request": {"unstructured": {"text": "..."}}, "userId": "..."}.'))
            return
        if len(text) > settings.CONVERSATION_MAX_TEXT_CHARS:
            await self.report(GatewayError(
                "text_too_long", f"The text is {len(text)} characters; the limit is {settings.CONVERSATION_MAX_TEXT_CHARS}."))
            return
        user_id = message.get("userId", "")
        if not isinstance(user_id, str) or len(user_id) > 100:
            await self.report(GatewayError("invalid_user_id", "userId must be a string of at most 100 characters."))
            return
        try:
            self.requests.put_nowait((text, user_id))
        except asyncio.QueueFull:
            await self.report(GatewayError(
                "too_many_pending_requests",
                f"{settings.CONVERSATION_MAX_PENDING} requests are already waiting; this one was not accepted."))

    async def _answer_requests(self) -> None:
        """One request at a time: the agent answers a turn before it hears the next."""
        pk = self.conversation.pk
        session = self.session
        assert session is not None  # started once the session is open
        while True:
            text, user_id = await self.requests.get()
            session.meter_add("messages", 1)
            self.reply = reply = _Reply()
            await session.from_client(*_item_event("user", text))
            await session.from_client(orjson.dumps({"type": "response.create"}).decode(), {"type": "response.create"})
            error = await reply.done
            self.reply = None
            turns = conversation_exchange_turns(conversation_pk=pk, user_text=text, user_id=user_id,
                                                replies=[] if error else reply.texts)
            # One write per exchange, by the writer task in order: the answer does not wait on the
            # database, and the connection's end waits for the writes (a resume then has every turn).
            self._writes.put_nowait(turns)
            if error is not None:
                await self.report(error)
                continue
            messages = [{"text": turn.text, "type": "text", "messageId": str(turn.message_id)} for turn in turns[1:]]
            self.send(orjson.dumps({"messages": messages,
                                          "conversationId": str(self.conversation.conversation_id)}).decode())

    # --- ClientLink: upstream events in, ConversationResponses out ------------------------------------

    def deliver(self, text: str, *, bounded: bool = True) -> None:
        """(Answers are assembled here, not queued towards the client: ``bounded`` does not apply.)"""
        try:
            event = orjson.loads(text)
        except orjson.JSONDecodeError:
            return
        kind = event.get("type") if isinstance(event, dict) else None
        reply = self.reply
        if kind == "error":
            error = event.get("error") or {}
            failure = GatewayError(str(error.get("code") or "agent_error"),
                                   str(error.get("message") or "The agent reported an error."))
            if reply is not None:
                reply.finish(error=failure)
            elif error.get("event_id") != "sb_conversation_text":
                self._send_error(failure)
            return
        if reply is None:
            return
        if kind in ("response.output_text.delta", "response.output_audio_transcript.delta"):
            reply.pending += str(event.get("delta") or "")
        elif kind in ("response.output_text.done", "response.output_audio_transcript.done"):
            said = event.get("text") if kind == "response.output_text.done" else event.get("transcript")
            reply.texts.append(said if isinstance(said, str) else reply.pending)
            reply.pending = ""
        elif kind == "response.done":
            response = event.get("response") or {}
            if response.get("status") == "failed":
                details = (response.get("status_details") or {}).get("error") or {}
                reply.finish(error=GatewayError("agent_failed", str(details.get("message") or
                                                                    "The agent could not answer.")))
            else:
                reply.finish()

    async def report(self, error: GatewayError) -> None:
        self._send_error(error)

    def _send_error(self, error: GatewayError) -> None:
        body: dict[str, object] = {"error": {"code": error.code, "message": error.message}}
        if self.conversation is not None:
            body["conversationId"] = str(self.conversation.conversation_id)
        self.send(orjson.dumps(body).decode())

    async def end(self, *, code: int, reason: str) -> None:
        self.outbox.close(code=code, reason=reason)

    async def resumed(self, *, replayed: int) -> None:
        """(A conversation resumes from its stored turns, never by session key.)"""

    # --- End ----------------------------------------------------------------------------------------

    async def disconnect(self, code: int | None) -> None:
        if self.worker is not None:
            await tasks_stop([self.worker])
        if self.reply is not None:
            self.reply.finish()
        if self.writer is not None:
            self._writes.put_nowait(None)  # after every exchange already answered
            try:
                async with asyncio.timeout(10):  # not wait_for: Python 3.11's can swallow a cancel (gh-86296)
                    await asyncio.shield(self.writer)
            except TimeoutError:
                logger.warning("conversation writes still pending at disconnect; left to finish")
        if self.session is not None:
            # Not resumable (the conversation is in the database): the upstream session ends now.
            await self.session.detach(self, close_code=code)


def conversation_application():
    """The ASGI application of the conversation route."""

    async def application(scope, receive, send):
        await ConversationConnection(scope, send).run(receive)

    return application
