"""One local-agent session: the realtime protocol state machine.

Client events arrive through ``handle_text`` (in order, from the WebSocket endpoint in app.py). Every
server event goes through ``emit``, which serialises it at once onto one outbox drained by one
writer task, so events leave in the order they were produced. Audio-side client events
(append/commit/clear) are processed in order by one input task (VAD and recognition in a recognition
worker); every other client event waits until the audio-side events sent before it are processed, so
answers keep the client's order (a commit then response.create answers with the committed turn in the
response, a clear's ``cleared`` comes before the next event's answer). A response is one task at a time. All tasks are named, tracked, and cancelled and awaited by ``close``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from django.conf import settings

from realtime.lib import audio
from realtime.local_agent import brain
from realtime.local_agent.config import ConfigError, new_id, session_config_default, session_config_update, silence_ms
from realtime.local_agent.speech import workers
from realtime.local_agent.speech.listener import Listener, transcribe_input
from realtime.local_agent.speech.tts import synthesize_stream

logger = logging.getLogger(__name__)

MAX_INPUT_BUFFER_BYTES = 15 * 1024 * 1024
# Largest client event accepted (an error event answers bigger ones): below daphne's 1 MiB frame
# limit, so the caller gets a protocol error rather than a dropped connection.
MAX_EVENT_BYTES = 1_000_000
# Synthesis is ~50x faster than speech. Audio is sent at most this far ahead of real time, as a
# streaming voice does, so a reply is still "in progress" while it plays and barge-in can stop it.
OUTPUT_LEAD_MS = 1500
_SENTENCE_END = (".", "!", "?", ";", ":")


class ProtocolError(ValueError):
    def __init__(self, code: str, message: str, *, param: str | None = None):
        super().__init__(message)
        self.code, self.param = code, param


def _tokens(text: str) -> int:
    # About four characters a token, as for English with common tokenizers.
    return math.ceil(len(text) / 4) if text else 0


@dataclass
class _Response:
    id: str
    modalities: list[str]
    instructions: str
    tools: list
    tool_choice: object
    voice: str
    speed: float
    output_format: dict
    max_output_tokens: object
    in_conversation: bool
    metadata: object
    task: asyncio.Task | None = None
    cancel_reason: str | None = None
    output: list[dict] = field(default_factory=list)
    out_text: list[str] = field(default_factory=list)
    out_audio_ms: float = 0.0
    input_usage: tuple[int, int, float] = (0, 0, 0.0)  # text tokens, audio tokens, audio seconds
    started: float = 0.0  # loop time of response.created


class Session:
    def __init__(self, *, send: Callable[[str], Awaitable[None]], model: str | None = None):
        self.config = session_config_default(model=model)
        self.id = self.config["id"]
        self._send = send
        self._outbox: asyncio.Queue = asyncio.Queue()
        self._input: asyncio.Queue = asyncio.Queue()
        self._input_idle = asyncio.Event()  # set while no audio-side event waits or is being processed
        self._input_idle.set()
        self._tasks: set[asyncio.Task] = set()
        self.items: list[dict] = []
        self._audio_ms: dict[str, float] = {}  # user audio item id -> duration, for usage
        self.response: _Response | None = None
        self._buffer = bytearray()  # input audio since the last commit, in the input format
        self._buffered = 0  # bytes accepted into the input queue and not yet committed or cleared
        self._stream_ms = 0.0  # all input audio of the session, for audio_start_ms / audio_end_ms
        self._listener: Listener | None = None
        self._listener_offset_ms = 0.0  # stream position where the current listener started
        self._speech_item_id: str | None = None
        self._closed = False

    # --- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        self._spawn(self._writer(), "writer")
        input_task = self._spawn(self._input_loop(), "input")
        input_task.add_done_callback(lambda _: self._input_idle.set())  # nobody waits on an ended loop
        self._spawn(workers.warm_up(), "warm-up")
        self.emit("session.created", session=self.config)

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._listener is not None:
            self._listener.close()

    def _spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.create_task(coro, name=f"local-agent:{self.id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("local agent task %s failed", task.get_name(), exc_info=task.exception())

    async def _writer(self) -> None:
        while True:
            text = await self._outbox.get()
            try:
                await self._send(text)
            except Exception:  # the caller went away mid-send; disconnect will close the session
                logger.info("local agent session %s: caller gone, output stopped", self.id)
                return

    # --- output -------------------------------------------------------------------------------------

    def emit(self, event_type: str, **fields) -> dict:
        event = {"type": event_type, "event_id": new_id("event"), **fields}
        # Serialised now, so later changes to items cannot alter an event already emitted.
        self._outbox.put_nowait(json.dumps(event))
        return event

    def error(self, code: str, message: str, *, param: str | None = None, event_id: str | None = None,
              error_type: str = "invalid_request_error") -> None:
        self.emit("error", error={"type": error_type, "code": code, "message": message, "param": param,
                                  "event_id": event_id})

    # --- input --------------------------------------------------------------------------------------

    async def handle_text(self, text: str) -> None:
        if len(text) > MAX_EVENT_BYTES or len(text.encode("utf-8")) > MAX_EVENT_BYTES:
            self.error("event_too_large", f"Events are limited to {MAX_EVENT_BYTES} bytes.")
            return
        try:
            event = json.loads(text)
        except json.JSONDecodeError as exc:
            self.error("invalid_json", f"The event is not valid JSON: {exc.msg} at position {exc.pos}.")
            return
        except RecursionError:
            self.error("invalid_json", "The event is nested too deeply.")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self.error("invalid_event", "An event must be a JSON object with a string 'type'.", param="type")
            return
        client_event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        handler = _HANDLERS.get(event["type"])
        if handler is None:
            self.error("unknown_event_type", f"Unknown event type {event['type'][:64]!r}.", param="type",
                       event_id=client_event_id)
            return
        try:
            if handler not in _AUDIO_SIDE:
                await self._input_idle.wait()
            await handler(self, event)
        except ProtocolError as exc:
            self.error(exc.code, str(exc), param=exc.param, event_id=client_event_id)
        except ConfigError as exc:
            self.error(exc.code, str(exc), param=exc.param, event_id=client_event_id)

    # session.update
    async def _on_session_update(self, event: dict) -> None:
        new = session_config_update(current=self.config, update=event.get("session"))
        new["id"] = self.id
        old_input = self.config["audio"]["input"]
        self.config = new
        if new["audio"]["input"]["format"] != old_input["format"] or \
                new["audio"]["input"]["turn_detection"] != old_input["turn_detection"]:
            self._input_put(("listen", new["audio"]["input"]))
        self.emit("session.updated", session=self.config)

    # input_audio_buffer.*
    async def _on_append(self, event: dict) -> None:
        try:
            data = audio.b64decode(event.get("audio"))
        except ValueError as exc:
            raise ProtocolError("invalid_audio", str(exc), param="audio") from None
        fmt = self.config["audio"]["input"]["format"]["type"]
        if fmt == audio.PCM and len(data) % 2:
            raise ProtocolError("invalid_audio_format",
                                "audio/pcm is 16-bit: the decoded audio must have an even number of bytes.",
                                param="audio")
        if self._buffered + len(data) > MAX_INPUT_BUFFER_BYTES:
            raise ProtocolError("input_audio_buffer_full",
                                "The input audio buffer is full (15 MiB); commit or clear it first.", param="audio")
        self._buffered += len(data)
        self._input_put(("append", data, fmt))

    async def _on_commit(self, event: dict) -> None:
        self._input_put(("commit", event.get("event_id")))

    async def _on_clear(self, event: dict) -> None:
        self._input_put(("clear", event.get("event_id")))

    @property
    def listener(self) -> Listener:
        assert self._listener is not None, "the input loop has not started"
        return self._listener

    def _listen(self, fmt: str) -> Listener:
        """A fresh listener (turn detection and recognition state) from the current stream position."""
        if self._listener is not None:
            self._listener.close()
        detection = self.config["audio"]["input"]["turn_detection"]
        self._listener = Listener(fmt=fmt, turn_detection=detection,
                                  silence_duration_ms=silence_ms(detection) if detection else 0)
        self._listener_offset_ms = self._stream_ms
        self._speech_item_id = None
        return self._listener

    def _input_put(self, item: tuple) -> None:
        self._input_idle.clear()
        self._input.put_nowait(item)

    async def _input_loop(self) -> None:
        self._listen(self.config["audio"]["input"]["format"]["type"])
        while True:
            if self._input.empty():
                self._input_idle.set()
            kind, *args = await self._input.get()
            if kind == "append":
                await self._audio_in(*args)
            elif kind == "commit":
                await self._manual_commit(args[0])
            elif kind == "clear":
                self._buffer.clear()
                self._buffered = 0
                self._listen(self.listener.fmt)
                self.emit("input_audio_buffer.cleared")
            elif kind == "listen":
                self._listen(args[0]["format"]["type"])

    async def _audio_in(self, data: bytes, fmt: str) -> None:
        listener = self.listener
        if fmt != listener.fmt:
            # The format changed after this chunk was accepted: it was valid when sent, keep it.
            listener = self._listen(fmt)
        self._buffer += data
        self._stream_ms += audio.duration_ms(len(data), fmt)
        for vad_event in await listener.ingest(data):
            position = int(self._listener_offset_ms + vad_event.ms)
            if vad_event.kind == "speech_started":
                self._speech_item_id = new_id("item")
                self.emit("input_audio_buffer.speech_started", audio_start_ms=position, item_id=self._speech_item_id)
                detection = self.config["audio"]["input"]["turn_detection"] or {}
                if self.response is not None and detection.get("interrupt_response", True):
                    await self._cancel_response("turn_detected")
            else:
                item_id = self._speech_item_id or new_id("item")
                self._speech_item_id = None
                self.emit("input_audio_buffer.speech_stopped", audio_end_ms=position, item_id=item_id)
                transcript = await listener.finish()
                self._commit(item_id, transcript, fmt)
                detection = self.config["audio"]["input"]["turn_detection"] or {}
                if detection.get("create_response", True) and self.response is None:
                    self._start_response({})
        self._drop_old_silence(fmt)

    def _drop_old_silence(self, fmt: str) -> None:
        """While turn detection hears no speech, keep only the pre-speech window of input audio: the
        turn it will commit starts at most that far before speech. Without turn detection the client
        commits, so everything since the last commit is kept (up to MAX_INPUT_BUFFER_BYTES)."""
        detection = self.config["audio"]["input"]["turn_detection"]
        if detection is None or self._speech_item_id is not None:
            return
        window_ms = max(settings.LOCAL_AGENT_PRE_SPEECH_MS, detection.get("prefix_padding_ms", 0))
        keep = audio.bytes_for_ms(window_ms, fmt)
        excess = len(self._buffer) - keep
        if excess > 0:
            del self._buffer[:excess]
            self._buffered -= excess

    async def _manual_commit(self, client_event_id) -> None:
        fmt = self.listener.fmt
        if not self._buffer:
            self.error("input_audio_buffer_commit_empty", "The input audio buffer is empty: nothing to commit.",
                       event_id=client_event_id)
            return
        item_id = self._speech_item_id or new_id("item")
        transcript = await transcribe_input(bytes(self._buffer), fmt)
        self._commit(item_id, transcript, fmt)
        self._listen(fmt)  # the committed audio must not also end a turn later

    def _commit(self, item_id: str, transcript: str, fmt: str) -> None:
        duration = audio.duration_ms(len(self._buffer), fmt)
        self._buffer.clear()
        self._buffered = 0
        previous = self.items[-1]["id"] if self.items else None
        self.emit("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        item: dict = {"id": item_id, "object": "realtime.item", "type": "message", "status": "completed",
                      "role": "user", "content": [{"type": "input_audio", "transcript": None}]}
        self.items.append(item)
        self._audio_ms[item_id] = duration
        self.emit("conversation.item.added", previous_item_id=previous, item=item)
        if transcript:
            self.emit("conversation.item.input_audio_transcription.delta", item_id=item_id, content_index=0,
                      delta=transcript)
        self.emit("conversation.item.input_audio_transcription.completed", item_id=item_id, content_index=0,
                  transcript=transcript, usage={"type": "duration", "seconds": round(duration / 1000, 3)})
        item["content"][0]["transcript"] = transcript
        self.emit("conversation.item.done", previous_item_id=previous, item=item)

    # conversation.item.*
    def _find(self, item_id) -> int:
        if not isinstance(item_id, str):
            raise ProtocolError("missing_required_parameter", "item_id is required.", param="item_id")
        for index, item in enumerate(self.items):
            if item["id"] == item_id:
                return index
        raise ProtocolError("item_not_found", f"No conversation item with id {item_id[:64]!r}.", param="item_id")

    async def _on_item_create(self, event: dict) -> None:
        item = _validated_item(event.get("item"))
        if item.get("id") and any(existing["id"] == item["id"] for existing in self.items):
            raise ProtocolError("item_already_exists", f"An item with id {item['id'][:64]!r} already exists.",
                                param="item.id")
        item.setdefault("id", new_id("item"))
        previous = event.get("previous_item_id")
        if previous is None:
            index = len(self.items)
        elif previous == "root":
            index = 0
        else:
            try:
                index = self._find(previous) + 1
            except ProtocolError as exc:
                raise ProtocolError(exc.code, str(exc), param="previous_item_id") from None
        self.items.insert(index, item)
        previous_id = self.items[index - 1]["id"] if index else None
        self.emit("conversation.item.added", previous_item_id=previous_id, item=item)
        self.emit("conversation.item.done", previous_item_id=previous_id, item=item)

    async def _on_item_delete(self, event: dict) -> None:
        item = self.items.pop(self._find(event.get("item_id")))
        self._audio_ms.pop(item["id"], None)
        self.emit("conversation.item.deleted", item_id=item["id"])

    async def _on_item_retrieve(self, event: dict) -> None:
        self.emit("conversation.item.retrieved", item=self.items[self._find(event.get("item_id"))])

    async def _on_item_truncate(self, event: dict) -> None:
        item = self.items[self._find(event.get("item_id"))]
        index, end_ms = event.get("content_index", 0), event.get("audio_end_ms")
        content = item.get("content") or []
        if item.get("role") != "assistant" or not isinstance(index, int) or not 0 <= index < len(content) \
                or content[index].get("type") != "output_audio":
            raise ProtocolError("invalid_value", "Only an assistant audio content part can be truncated.",
                                param="content_index")
        played = self._audio_ms.get(item["id"], 0.0)
        if not isinstance(end_ms, int) or isinstance(end_ms, bool) or not 0 <= end_ms <= played:
            raise ProtocolError("invalid_value", f"audio_end_ms must be an integer from 0 to {int(played)}.",
                                param="audio_end_ms")
        self._audio_ms[item["id"]] = float(end_ms)
        # The unheard part never reached the user, so the transcript loses it too (proportionally).
        transcript = content[index].get("transcript") or ""
        content[index]["transcript"] = transcript[:int(len(transcript) * end_ms / played)] if played else ""
        self.emit("conversation.item.truncated", item_id=item["id"], content_index=index, audio_end_ms=end_ms)

    # response.*
    async def _on_response_create(self, event: dict) -> None:
        if self.response is not None:
            raise ProtocolError("conversation_already_has_active_response",
                                f"Response {self.response.id} is still in progress; cancel it or wait for response.done.")
        params = event.get("response") or {}
        if not isinstance(params, dict):
            raise ProtocolError("invalid_value", "response must be an object.", param="response")
        self._start_response(params)

    async def _on_response_cancel(self, event: dict) -> None:
        wanted = event.get("response_id")
        if self.response is None or (wanted and wanted != self.response.id):
            raise ProtocolError("response_cancel_not_active", "There is no active response to cancel.",
                                param="response_id" if wanted else None)
        await self._cancel_response("client_cancelled")

    async def _cancel_response(self, reason: str) -> None:
        response = self.response
        if response is None or response.task is None:
            return
        response.cancel_reason = reason
        response.task.cancel()
        await asyncio.gather(response.task, return_exceptions=True)

    def _start_response(self, params: dict) -> None:
        cfg = self.config
        overrides = {k: params[k] for k in ("output_modalities", "instructions", "tools", "tool_choice",
                                            "max_output_tokens") if k in params}
        if "modalities" in params:
            overrides.setdefault("output_modalities", params["modalities"])
        output_audio = ((params.get("audio") or {}).get("output") or {}) if isinstance(params.get("audio"), dict) else {}
        if output_audio:
            overrides["audio"] = {"output": output_audio}
        merged = session_config_update(current=cfg, update=overrides) if overrides else cfg
        conversation = params.get("conversation", "auto")
        if conversation not in ("auto", "none"):
            raise ProtocolError("invalid_value", "conversation must be 'auto' or 'none'.", param="response.conversation")
        response = _Response(
            id=new_id("resp"), modalities=merged["output_modalities"], instructions=merged["instructions"],
            tools=merged["tools"], tool_choice=merged["tool_choice"], voice=merged["audio"]["output"]["voice"],
            speed=merged["audio"]["output"]["speed"], output_format=merged["audio"]["output"]["format"],
            max_output_tokens=merged["max_output_tokens"], in_conversation=conversation == "auto",
            metadata=params.get("metadata"))
        self.response = response
        response.task = self._spawn(self._run_response(response), f"response:{response.id}")

    def _response_object(self, response: _Response, status: str, *, details=None, usage=None) -> dict:
        return {"object": "realtime.response", "id": response.id, "status": status, "status_details": details,
                "output": response.output,
                "conversation_id": f"conv_{self.id[5:]}" if response.in_conversation else None,
                "output_modalities": response.modalities, "max_output_tokens": response.max_output_tokens,
                "audio": {"output": {"format": response.output_format, "voice": response.voice}},
                "usage": usage, "metadata": response.metadata}

    def _input_usage(self, response: _Response) -> tuple[int, int, float]:
        text_tokens = _tokens(response.instructions)
        audio_tokens, audio_ms = 0, 0.0
        for item in self.items:
            if item["id"] in self._audio_ms and item.get("role") == "user":
                audio_ms += self._audio_ms[item["id"]]
                audio_tokens += math.ceil(self._audio_ms[item["id"]] / 100)  # 10 tokens a second of input
            elif item.get("type") == "message":
                text_tokens += _tokens(brain.item_text(item))
            else:
                text_tokens += _tokens(item.get("arguments", "") + item.get("output", "") + item.get("name", ""))
        return text_tokens, audio_tokens, audio_ms / 1000

    async def _run_response(self, response: _Response) -> None:
        response.input_usage = self._input_usage(response)
        response.started = asyncio.get_running_loop().time()
        context = list(self.items)
        self.emit("response.created", response=self._response_object(response, "in_progress"))
        writer = _OutputWriter(self, response)
        status = "completed"
        details: dict | None = None
        try:
            async for output in brain.brain_reply(items=context, instructions=response.instructions,
                                                  tools=response.tools, tool_choice=response.tool_choice):
                if isinstance(output, brain.FunctionCall):
                    await writer.finish_message()
                    writer.function_call(output)
                else:
                    await writer.text(output.text)
                if writer.over_limit():
                    status, details = "incomplete", {"type": "incomplete", "reason": "max_output_tokens"}
                    break
            await writer.finish_message()
        except asyncio.CancelledError:
            if response.cancel_reason is None:
                raise  # the session is closing; nobody is listening for response.done
            status, details = "cancelled", {"type": "cancelled", "reason": response.cancel_reason}
        except brain.BrainError as exc:
            status, details = "failed", {"type": "failed", "error": {"type": "server_error", "code": "llm_failed",
                                                                      "message": str(exc)}}
        writer.close_open_item("incomplete")
        text_in, audio_in, audio_in_s = response.input_usage
        text_out = _tokens("".join(response.out_text))
        audio_out = math.ceil(response.out_audio_ms / 50)  # 20 tokens a second of output audio
        usage = {"total_tokens": text_in + audio_in + text_out + audio_out,
                 "input_tokens": text_in + audio_in, "output_tokens": text_out + audio_out,
                 "input_token_details": {"text_tokens": text_in, "audio_tokens": audio_in, "image_tokens": 0,
                                         "cached_tokens": 0,
                                         "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0}},
                 "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
                 # Not in the OpenAI schema: exact audio durations, for metering cross-checks.
                 "input_audio_seconds": round(audio_in_s, 3), "output_audio_seconds": round(response.out_audio_ms / 1000, 3)}
        self.response = None
        self.emit("response.done", response=self._response_object(response, status, details=details, usage=usage))


class _OutputWriter:
    """Turns brain output into output items: a message and function calls. A message has one content
    part per output modality: ``output_audio`` (spoken sentence by sentence as the text arrives, with
    its transcript) first, so a client truncating part 0 truncates the audio, then ``output_text``.

    Like seed 004's service, a response's own items end with ``response.output_item.done`` only:
    ``conversation.item.done`` is for items the client put into the conversation. Seed 004's Node
    example answers every ``conversation.item.done`` with ``response.create``; were the reply's item
    announced that way too, each reply would ask for the next one without end.
    """

    def __init__(self, session: Session, response: _Response):
        self.session, self.response = session, response
        self.audio = "audio" in response.modalities
        self.text_part = "text" in response.modalities or not self.audio
        self.audio_index, self.text_index = 0, 1 if self.audio else 0
        self.item: dict | None = None
        self.pending = ""
        self.spoken = ""

    @property
    def open_item(self) -> dict:
        assert self.item is not None, "no output item is open"
        return self.item

    def _ids(self) -> dict:
        return {"response_id": self.response.id, "item_id": self.open_item["id"], "output_index": len(self.response.output) - 1}

    def _open(self, item: dict) -> None:
        self.item = item
        self.response.output.append(item)
        s = self.session
        s.emit("response.output_item.added", response_id=self.response.id, output_index=len(self.response.output) - 1,
               item=item)
        if self.response.in_conversation:
            previous = s.items[-1]["id"] if s.items else None
            s.items.append(item)
            s.emit("conversation.item.added", previous_item_id=previous, item=item)

    def _close(self, status: str) -> None:
        item = self.open_item
        item["status"] = status
        self.session.emit("response.output_item.done", response_id=self.response.id,
                          output_index=len(self.response.output) - 1, item=item)
        self.item = None

    def over_limit(self) -> bool:
        limit = self.response.max_output_tokens
        return isinstance(limit, int) and _tokens("".join(self.response.out_text)) >= limit

    async def text(self, delta: str) -> None:
        if not delta:
            return
        s = self.session
        if self.item is None:
            self._open({"id": new_id("item"), "object": "realtime.item", "type": "message", "status": "in_progress",
                        "role": "assistant", "content": []})
            parts = ([{"type": "output_audio", "transcript": ""}] if self.audio else []) + \
                ([{"type": "output_text", "text": ""}] if self.text_part else [])
            for index, part in enumerate(parts):
                self.open_item["content"].append(part)
                s.emit("response.content_part.added", **self._ids(), content_index=index, part=part)
        self.response.out_text.append(delta)
        if self.text_part:
            self.open_item["content"][self.text_index]["text"] += delta
            s.emit("response.output_text.delta", **self._ids(), content_index=self.text_index, delta=delta)
        if not self.audio:
            return
        self.pending += delta
        # Speak whole sentences as soon as they are complete.
        cut = max(self.pending.rfind(mark + " ") for mark in _SENTENCE_END)
        if cut >= 0:
            sentence, self.pending = self.pending[:cut + 1], self.pending[cut + 2:]
            await self._speak(sentence)

    async def _speak(self, sentence: str) -> None:
        sentence = sentence.strip()
        if not sentence:
            return
        s, response = self.session, self.response
        text = (" " if self.spoken else "") + sentence
        self.spoken += text
        self.open_item["content"][self.audio_index]["transcript"] += text
        s.emit("response.output_audio_transcript.delta", **self._ids(), content_index=self.audio_index, delta=text)
        fmt = response.output_format["type"]
        async for pcm in synthesize_stream(sentence, sample_rate=audio.format_rate(fmt), voice=response.voice,
                                           speed=response.speed):
            lead_ms = response.out_audio_ms - (asyncio.get_running_loop().time() - response.started) * 1000
            if lead_ms > OUTPUT_LEAD_MS:
                await asyncio.sleep((lead_ms - OUTPUT_LEAD_MS) / 1000)
            encoded = audio.from_pcm16(pcm, fmt)
            response.out_audio_ms += audio.duration_ms(len(encoded), fmt)
            s._audio_ms[self.open_item["id"]] = response.out_audio_ms
            s.emit("response.output_audio.delta", **self._ids(), content_index=self.audio_index,
                   delta=audio.b64encode(encoded))

    async def finish_message(self) -> None:
        if self.item is None or self.item["type"] != "message":
            return
        if self.audio and self.pending.strip():
            sentence, self.pending = self.pending, ""
            await self._speak(sentence)
        self._finish_parts()
        self._close("completed")

    def _finish_parts(self) -> None:
        s, content = self.session, self.open_item["content"]
        if self.audio:
            part = content[self.audio_index]
            s.emit("response.output_audio.done", **self._ids(), content_index=self.audio_index)
            s.emit("response.output_audio_transcript.done", **self._ids(), content_index=self.audio_index,
                   transcript=part["transcript"])
            s.emit("response.content_part.done", **self._ids(), content_index=self.audio_index, part=part)
        if self.text_part:
            part = content[self.text_index]
            s.emit("response.output_text.done", **self._ids(), content_index=self.text_index, text=part["text"])
            s.emit("response.content_part.done", **self._ids(), content_index=self.text_index, part=part)

    def function_call(self, call: brain.FunctionCall) -> None:
        item_id, call_id = new_id("item"), new_id("call")
        self._open({"id": item_id, "object": "realtime.item", "type": "function_call", "status": "in_progress",
                    "name": call.name, "call_id": call_id, "arguments": ""})
        s = self.session
        s.emit("response.function_call_arguments.delta", **self._ids(), call_id=call_id, delta=call.arguments)
        self.open_item["arguments"] = call.arguments
        self.response.out_text.append(call.name + call.arguments)
        s.emit("response.function_call_arguments.done", **self._ids(), call_id=call_id, name=call.name,
               arguments=call.arguments)
        self._close("completed")

    def close_open_item(self, status: str) -> None:
        """A cancelled or failed response still closes what it opened, so clients see every item end."""
        if self.item is None:
            return
        if self.item["type"] == "message":
            self._finish_parts()
        self._close(status)


def _validated_item(item) -> dict:
    if not isinstance(item, dict):
        raise ProtocolError("missing_required_parameter", "item is required and must be an object.", param="item")
    item = json.loads(json.dumps(item))  # a private copy
    kind = item.get("type")
    if "id" in item and (not isinstance(item["id"], str) or not 0 < len(item["id"]) <= 64):
        raise ProtocolError("invalid_value", "item.id must be a string of 1 to 64 characters.", param="item.id")
    if kind == "message":
        role = item.get("role")
        if role not in ("user", "assistant", "system"):
            raise ProtocolError("invalid_value", "item.role must be user, assistant or system.", param="item.role")
        content = item.get("content")
        if not isinstance(content, list) or not content:
            raise ProtocolError("invalid_value", "item.content must be a non-empty list.", param="item.content")
        allowed = {"user": {"input_text", "input_audio"}, "system": {"input_text"},
                   "assistant": {"output_text", "text", "output_audio", "audio"}}[role]
        for index, part in enumerate(content):
            where = f"item.content[{index}]"
            if not isinstance(part, dict) or part.get("type") not in allowed:
                raise ProtocolError("invalid_value", f"{role} content parts must be of type {', '.join(sorted(allowed))}.",
                                    param=f"{where}.type")
            if part["type"] in ("input_text", "output_text", "text") and not isinstance(part.get("text"), str):
                raise ProtocolError("invalid_value", "A text part needs a string 'text'.", param=f"{where}.text")
            if part["type"] == "input_audio" and part.get("audio") is not None:
                try:
                    audio.b64decode(part["audio"])
                except ValueError as exc:
                    raise ProtocolError("invalid_audio", str(exc), param=f"{where}.audio") from None
                part.pop("audio")  # kept as its transcript only; the local brain reads words
                part.setdefault("transcript", None)
    elif kind == "function_call":
        for key in ("name", "call_id"):
            if not isinstance(item.get(key), str) or not item[key]:
                raise ProtocolError("missing_required_parameter", f"item.{key} is required.", param=f"item.{key}")
        item.setdefault("arguments", "{}")
    elif kind == "function_call_output":
        if not isinstance(item.get("call_id"), str) or not item["call_id"]:
            raise ProtocolError("missing_required_parameter", "item.call_id is required.", param="item.call_id")
        if not isinstance(item.get("output"), str):
            raise ProtocolError("invalid_value", "item.output must be a string.", param="item.output")
    else:
        raise ProtocolError("invalid_value", "item.type must be message, function_call or function_call_output.",
                            param="item.type")
    item["object"] = "realtime.item"
    item["status"] = "completed"
    return item


# Queued for the input task in arrival order; the other handlers first wait for that queue to drain.
_AUDIO_SIDE = {Session._on_append, Session._on_commit, Session._on_clear}

_HANDLERS = {
    "session.update": Session._on_session_update,
    "input_audio_buffer.append": Session._on_append,
    "input_audio_buffer.commit": Session._on_commit,
    "input_audio_buffer.clear": Session._on_clear,
    "conversation.item.create": Session._on_item_create,
    "conversation.item.delete": Session._on_item_delete,
    "conversation.item.retrieve": Session._on_item_retrieve,
    "conversation.item.truncate": Session._on_item_truncate,
    "response.create": Session._on_response_create,
    "response.cancel": Session._on_response_cancel,
}
