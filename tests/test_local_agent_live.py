"""The local agent as a real server process (``manage.py run_local_agent``), driven by real WebSocket
clients: text and audio turns, G.711, barge-in, tools, bad input, and the official openai SDK."""
from __future__ import annotations

import asyncio
import base64
import functools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import websockets

from realtime.lib import audio
from realtime.local_agent.speech.stt import speech_to_text

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), pytest.mark.xdist_group("voice")]

SECRET = "test-local-agent-secret"
PATH = "/agents/local/v1/realtime"
# eSpeak NG says this during the test; pocketsphinx must hear the key words in it.
SPOKEN = "please tell me the weather in london"
SPOKEN_VOICE = "sage"
KEY_WORDS = ("weather", "london")


@pytest.fixture
def agent(server_factory):
    return server_factory(env={"LOCAL_AGENT_SECRET": SECRET, "SPEECH_WORKERS": "2"},
                          argv=[sys.executable, "manage.py", "run_local_agent", "--port", "{port}"])


class AgentClient:
    def __init__(self, ws):
        self.ws = ws
        self.events: list[dict] = []

    async def send(self, event_type: str, **fields) -> None:
        await self.ws.send(json.dumps({"type": event_type, **fields}))

    async def next(self, timeout: float = 20) -> dict:
        event = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.events.append(event)
        return event

    async def until(self, event_type: str, timeout: float = 30) -> list[dict]:
        """Events up to and including the first of ``event_type``."""
        seen = []
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next(timeout)
                seen.append(event)
                if event["type"] == event_type:
                    return seen


async def connect(server, **kwargs) -> AgentClient:
    ws = await websockets.connect(server.ws_url + PATH, additional_headers={"Authorization": f"Bearer {SECRET}"},
                                  max_size=None, **kwargs)
    client = AgentClient(ws)
    created = await client.next()
    assert created["type"] == "session.created"
    return client


@functools.cache
def _speaker(text: str, rate: int) -> bytes:
    """The test speaker's PCM16, made by eSpeak NG in a process of its own. eSpeak carries state from one
    synthesis to the next (this voice's breath noise draws on the C library's rand(), and its echo), so
    in the test process the sentence came out a little different depending on what was spoken before,
    and 8 kHz recognition of it failed about one G.711 run in twelve. A fresh process says it the same way every
    time."""
    script = ("import sys; from realtime.local_agent.speech.tts import text_to_speech; "
              "sys.stdout.buffer.write(text_to_speech(sys.argv[1], sample_rate=int(sys.argv[2]), voice=sys.argv[3]))")
    return subprocess.run([sys.executable, "-c", script, text, str(rate), SPOKEN_VOICE], check=True,
                          capture_output=True, cwd=Path(__file__).resolve().parent.parent, timeout=60).stdout


def spoken_pcm(text: str, rate: int, artifacts_dir=None) -> bytes:
    """Speech made by eSpeak NG, padded with silence like a real microphone, through a WAV file."""
    pcm = _speaker(text, rate)
    wav = audio.wav_bytes(b"\0" * (rate // 2 * 2) + pcm + b"\0" * (rate * 2 * 2), rate)
    if artifacts_dir is not None:
        (artifacts_dir / "local_agent_utterance.wav").write_bytes(wav)
    frames, wav_rate = audio.wav_read(wav)
    assert wav_rate == rate
    return frames


async def stream_audio(client: AgentClient, data: bytes, fmt: str, *, realtime: bool = False) -> None:
    chunk = audio.bytes_for_ms(100, fmt)
    for offset in range(0, len(data), chunk):
        await client.send("input_audio_buffer.append", audio=base64.b64encode(data[offset:offset + chunk]).decode())
        if realtime:
            await asyncio.sleep(0.1)  # pacing like a microphone, not waiting for an outcome


def audio_of(events: list[dict]) -> bytes:
    return b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta")


def rms(pcm16: bytes) -> float:
    samples = np.frombuffer(pcm16, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples ** 2))) if len(samples) else 0.0


async def test_callers_without_the_agent_secret_are_refused(agent):
    for headers, code in (({}, 4001), ({"Authorization": "Bearer wrong-secret"}, 4003),
                          ({"Authorization": f"Basic {SECRET}"}, 4001)):
        async with websockets.connect(agent.ws_url + PATH, additional_headers=headers) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd.code == code


async def test_text_turn_yields_text_and_audio(agent):
    client = await connect(agent)
    session = client.events[0]["session"]
    assert session["type"] == "realtime" and session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"

    await client.send("session.update", session={"instructions": "Be brief.", "output_modalities": ["audio"]})
    updated = await client.next()
    assert updated["type"] == "session.updated" and updated["session"]["instructions"] == "Be brief."

    await client.send("conversation.item.create", item={"type": "message", "role": "user",
                                                        "content": [{"type": "input_text", "text": "Hello there, agent."}]})
    added, done = await client.next(), await client.next()
    assert (added["type"], done["type"]) == ("conversation.item.added", "conversation.item.done")
    await client.send("response.create")
    events = await client.until("response.done")
    types = [e["type"] for e in events]
    assert types[0] == "response.created"
    assert types.index("response.output_audio_transcript.delta") < types.index("response.output_audio.delta")
    assert types[-3:] == ["response.content_part.done", "response.output_item.done", "response.done"]
    # The reply's item is announced by conversation.item.added but ends with response.output_item.done
    # only: conversation.item.done is for items the client adds (seed 004's example answers it with
    # response.create).
    assert "conversation.item.added" in types and "conversation.item.done" not in types
    deltas = [base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"]
    assert len(deltas) > 5 and max(len(d) for d in deltas) <= 4800  # each at most 100 ms of 24 kHz PCM16
    pcm = b"".join(deltas)
    transcript = next(e for e in events if e["type"] == "response.output_audio_transcript.done")["transcript"]
    assert "Hello there, agent" in transcript
    seconds = len(pcm) / 48000
    assert 0.25 * len(transcript.split()) < seconds < 1.0 * len(transcript.split())  # speech-rate plausible
    assert rms(pcm) > 300  # not silence

    response = events[-1]["response"]
    assert response["status"] == "completed"
    usage = response["usage"]
    assert usage["output_token_details"]["audio_tokens"] == math.ceil(seconds * 1000 / 50)
    assert usage["output_tokens"] == usage["output_token_details"]["audio_tokens"] + usage["output_token_details"]["text_tokens"]
    assert usage["input_tokens"] == usage["input_token_details"]["text_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["output_audio_seconds"] == pytest.approx(seconds, abs=0.002)

    # Text modality for one response: text deltas and no audio.
    await client.send("response.create", response={"output_modalities": ["text"]})
    events = await client.until("response.done")
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert "Hello there, agent" in text
    assert next(e for e in events if e["type"] == "response.output_text.done")["text"] == text
    assert not audio_of(events)
    await client.ws.close()


async def test_text_and_audio_modalities_give_both_output_text_and_audio(agent):
    # What both of seed 004's examples ask for.
    client = await connect(agent)
    await client.send("session.update", session={"output_modalities": ["text", "audio"]})
    assert (await client.next())["type"] == "session.updated"
    await client.send("conversation.item.create", item={"type": "message", "role": "user",
                                                        "content": [{"type": "input_text", "text": "Hello!"}]})
    await client.send("response.create", response={"output_modalities": ["text", "audio"]})
    events = await client.until("response.done")
    parts = [(e["content_index"], e["part"]["type"]) for e in events if e["type"] == "response.content_part.added"]
    assert parts == [(0, "output_audio"), (1, "output_text")]
    text_deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert text_deltas and {e["content_index"] for e in text_deltas} == {1}
    text = next(e for e in events if e["type"] == "response.output_text.done")["text"]
    transcript = next(e for e in events if e["type"] == "response.output_audio_transcript.done")["transcript"]
    assert text == "".join(e["delta"] for e in text_deltas) and "Hello!" in text
    assert transcript.split() == text.split()  # the same words, spoken
    assert rms(audio_of(events)) > 300
    item = events[-1]["response"]["output"][0]
    assert [part["type"] for part in item["content"]] == ["output_audio", "output_text"]
    await client.ws.close()


async def test_audio_turn_from_spoken_wav(agent, artifacts_dir):
    client = await connect(agent)
    await stream_audio(client, spoken_pcm(SPOKEN, 24000, artifacts_dir), audio.PCM)
    events = await client.until("response.done", timeout=60)
    by_type = {}
    for event in events:
        by_type.setdefault(event["type"], event)
    started, stopped = by_type["input_audio_buffer.speech_started"], by_type["input_audio_buffer.speech_stopped"]
    # The WAV has 0.5 s of silence, then about 2 s of speech.
    assert 200 <= started["audio_start_ms"] <= 700
    assert started["audio_start_ms"] + 1000 < stopped["audio_end_ms"] < 4000
    assert started["item_id"] == stopped["item_id"] == by_type["input_audio_buffer.committed"]["item_id"]
    transcript = by_type["conversation.item.input_audio_transcription.completed"]["transcript"]
    for word in KEY_WORDS:
        assert word in transcript, transcript
    user_item = [e for e in events if e["type"] == "conversation.item.done"][0]["item"]
    assert user_item["role"] == "user" and user_item["content"][0]["transcript"] == transcript

    pcm = audio_of(events)
    assert len(pcm) % 2 == 0 and 1.0 < len(pcm) / 48000 < 12  # PCM16 24 kHz, a spoken sentence or two
    assert rms(pcm) > 300
    # The reply is speech: pocketsphinx hears a sentence of words in it.
    heard = speech_to_text(pcm, 24000)
    assert len(heard.split()) >= 4, heard
    usage = events[-1]["response"]["usage"]
    assert usage["input_token_details"]["audio_tokens"] > 0 and usage["input_audio_seconds"] > 2
    await client.ws.close()


@pytest.mark.parametrize("fmt, encode, decode", [
    (audio.PCMU, audio.pcm16_to_ulaw, audio.ulaw_to_pcm16),
    (audio.PCMA, audio.pcm16_to_alaw, audio.alaw_to_pcm16),
])
async def test_g711_in_both_directions(agent, fmt, encode, decode):
    client = await connect(agent)
    await client.send("session.update", session={"audio": {"input": {"format": {"type": fmt}},
                                                           "output": {"format": {"type": fmt}}}})
    updated = await client.next()
    assert updated["session"]["audio"]["input"]["format"] == {"type": fmt, "rate": 8000}
    await stream_audio(client, encode(spoken_pcm(SPOKEN, 8000)), fmt)
    events = await client.until("response.done", timeout=60)
    transcript = next(e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed")["transcript"]
    assert any(word in transcript for word in KEY_WORDS), transcript
    deltas = [base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"]
    assert deltas and max(len(d) for d in deltas) <= 800  # 100 ms of 8 kHz G.711
    pcm = decode(b"".join(deltas))
    assert 1.0 < len(pcm) / 16000 < 12 and rms(pcm) > 300
    assert events[-1]["response"]["audio"]["output"]["format"]["type"] == fmt
    await client.ws.close()


async def test_barge_in_cancels_the_response_and_its_audio(agent):
    client = await connect(agent)
    long_text = " ".join(f"This is sentence number {n} of a long story." for n in range(40))
    await client.send("conversation.item.create", item={"type": "message", "role": "user",
                                                        "content": [{"type": "input_text", "text": long_text}]})
    await client.until("conversation.item.done")
    await client.send("response.create")
    before = await client.until("response.output_audio.delta")
    response_id = before[-1]["response_id"]
    # The user starts talking over the reply.
    await stream_audio(client, spoken_pcm(SPOKEN, 24000), audio.PCM)
    events = await client.until("response.done", timeout=60)
    started = next(i for i, e in enumerate(events) if e["type"] == "input_audio_buffer.speech_started")
    done = events[-1]["response"]
    assert done["id"] == response_id
    assert done["status"] == "cancelled" and done["status_details"]["reason"] == "turn_detected"
    assert started < len(events) - 1
    spoken_ms = done["usage"]["output_audio_seconds"] * 1000
    assert spoken_ms < 30_000  # far less than the whole story
    # Nothing more of the cancelled response arrives; the next response is the answer to the new turn.
    after = await client.until("response.done", timeout=60)
    assert all(e.get("response_id") != response_id for e in after)
    assert after[-1]["response"]["status"] == "completed"

    # A client's response.cancel.
    await client.send("response.create")
    await client.until("response.output_audio.delta")
    await client.send("response.cancel")
    done = (await client.until("response.done"))[-1]["response"]
    assert done["status"] == "cancelled" and done["status_details"]["reason"] == "client_cancelled"
    await client.ws.close()


async def test_tool_call_round_trip(agent):
    client = await connect(agent)
    tool = {"type": "function", "name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
    await client.send("session.update", session={"tools": [tool], "output_modalities": ["text"]})
    await client.until("session.updated")
    await client.send("conversation.item.create", item={"type": "message", "role": "user",
                                                        "content": [{"type": "input_text", "text": "What is the weather in Paris?"}]})
    await client.send("response.create")
    events = await client.until("response.done")
    call = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Paris"}
    item = events[-1]["response"]["output"][0]
    assert item["type"] == "function_call" and item["call_id"] == call["call_id"]

    await client.send("conversation.item.create", item={"type": "function_call_output", "call_id": call["call_id"],
                                                        "output": json.dumps({"forecast": "sunny, 21 C"})})
    await client.until("conversation.item.done")
    await client.send("response.create")
    events = await client.until("response.done")
    text = next(e for e in events if e["type"] == "response.output_text.done")["text"]
    assert "sunny, 21 C" in text and "get weather" in text
    await client.ws.close()


async def test_conversation_item_retrieve_delete_and_truncate(agent):
    client = await connect(agent)
    await client.send("conversation.item.create", item={"id": "item_mine", "type": "message", "role": "user",
                                                        "content": [{"type": "input_text", "text": "Remember me."}]})
    await client.until("conversation.item.done")
    await client.send("conversation.item.retrieve", item_id="item_mine")
    retrieved = await client.next()
    assert retrieved["type"] == "conversation.item.retrieved" and retrieved["item"]["content"][0]["text"] == "Remember me."
    await client.send("response.create")
    done = (await client.until("response.done"))[-1]["response"]
    reply_id = done["output"][0]["id"]
    await client.send("conversation.item.truncate", item_id=reply_id, content_index=0, audio_end_ms=300)
    truncated = await client.next()
    assert truncated == {**truncated, "type": "conversation.item.truncated", "item_id": reply_id, "audio_end_ms": 300}
    await client.send("conversation.item.delete", item_id="item_mine")
    assert (await client.next())["type"] == "conversation.item.deleted"
    await client.send("conversation.item.retrieve", item_id="item_mine", event_id="evt_9")
    error = await client.next()
    assert error["type"] == "error" and error["error"]["code"] == "item_not_found" and error["error"]["event_id"] == "evt_9"
    await client.ws.close()


BAD_INPUT = [
    ("{not json", "invalid_json", None),
    (json.dumps(["a list"]), "invalid_event", "type"),
    (json.dumps({"type": "session.explode"}), "unknown_event_type", "type"),
    (json.dumps({"type": "input_audio_buffer.append", "audio": "***not base64***"}), "invalid_audio", "audio"),
    (json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\x01\x02\x03").decode()}),
     "invalid_audio_format", "audio"),
    (json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 1_040_000}), "event_too_large", None),
    (json.dumps({"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/mp3"}}}}}),
     "invalid_value", "session.audio.input.format.type"),
    (json.dumps({"type": "session.update", "session": {"audio": {"input": {"turn_detection": {"threshold": 7}}}}}),
     "invalid_value", "session.audio.input.turn_detection.threshold"),
    (json.dumps({"type": "session.update", "session": {"colour": "blue"}}), "unknown_parameter", "session.colour"),
    (json.dumps({"type": "conversation.item.create", "item": {"type": "message", "role": "robot", "content": []}}),
     "invalid_value", "item.role"),
    (json.dumps({"type": "conversation.item.delete", "item_id": "item_nope"}), "item_not_found", "item_id"),
    (json.dumps({"type": "input_audio_buffer.commit"}), "input_audio_buffer_commit_empty", None),
    (json.dumps({"type": "response.cancel"}), "response_cancel_not_active", None),
]


async def test_every_bad_input_gives_an_error_event_and_the_session_continues(agent):
    client = await connect(agent)
    for index, (frame, code, param) in enumerate(BAD_INPUT):
        if frame.startswith("{\"type\""):
            frame = frame[:-1] + f', "event_id": "evt_{index}"}}'
        await client.ws.send(frame)
        error = await client.next()
        assert error["type"] == "error", (code, error)
        assert set(error) == {"type", "event_id", "error"}
        assert set(error["error"]) == {"type", "code", "message", "param", "event_id"}
        assert (error["error"]["code"], error["error"]["param"]) == (code, param), frame[:80]
        assert error["error"]["message"]
        if frame.startswith("{\"type\"") and len(frame) < 1_000_000:
            assert error["error"]["event_id"] == f"evt_{index}"
    # Binary frames are refused the same way.
    await client.ws.send(b"\x00\x01")
    assert (await client.next())["error"]["code"] == "invalid_event"
    # A second response.create while one runs.
    await client.send("conversation.item.create", item={"type": "message", "role": "user",
                                                        "content": [{"type": "input_text", "text": "Still there?"}]})
    await client.until("conversation.item.done")
    await client.send("response.create")
    await client.send("response.create")
    events = await client.until("response.done")
    errors = [e for e in events if e["type"] == "error"]
    assert [e["error"]["code"] for e in errors] == ["conversation_already_has_active_response"]
    assert events[-1]["response"]["status"] == "completed"
    assert "Still there" in next(e for e in events if e["type"] == "response.output_audio_transcript.done")["transcript"]
    # The config was never touched by the refused updates.
    await client.send("session.update", session={})
    session = (await client.next())["session"]
    assert session["audio"]["input"]["format"]["type"] == "audio/pcm"
    assert session["audio"]["input"]["turn_detection"]["threshold"] == 0.5
    await client.ws.close()


async def test_openai_sdk_realtime_client_holds_a_session(agent):
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key=SECRET, websocket_base_url=agent.ws_url + "/agents/local/v1")
    async with client.realtime.connect(model="switchboard-local") as connection:
        created = await asyncio.wait_for(connection.recv(), 20)
        assert created.type == "session.created" and created.session.model == "switchboard-local"
        await connection.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await connection.conversation.item.create(item={"type": "message", "role": "user",
                                                        "content": [{"type": "input_text", "text": "Hi from the SDK"}]})
        await connection.response.create()
        text, types = "", []
        async with asyncio.timeout(30):
            async for event in connection:
                types.append(event.type)
                if event.type == "response.output_text.delta":
                    text += event.delta
                if event.type == "response.done":
                    break
        assert "session.updated" in types and "conversation.item.added" in types
        assert "Hi from the SDK" in text
        assert event.response.status == "completed" and event.response.usage.output_tokens > 0


async def test_the_agent_is_also_served_by_the_main_application(server_factory):
    server = server_factory(env={"LOCAL_AGENT_SECRET": SECRET})
    client = await connect(server)
    assert client.events[0]["session"]["object"] == "realtime.session"
    await client.ws.close()


async def test_manual_commit_and_turn_detection_without_automatic_response(agent):
    client = await connect(agent)
    utterance = spoken_pcm(SPOKEN, 24000)
    # No turn detection: the client commits, and gets a transcript but no response.
    await client.send("session.update", session={"audio": {"input": {"turn_detection": None}}})
    await client.until("session.updated")
    await stream_audio(client, utterance, audio.PCM)
    await client.send("input_audio_buffer.commit")
    events = await client.until("conversation.item.done", timeout=60)
    assert [e["type"] for e in events][:2] == ["input_audio_buffer.committed", "conversation.item.added"]
    transcript = next(e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed")["transcript"]
    assert "weather" in transcript, transcript
    assert not any(e["type"].startswith("input_audio_buffer.speech") for e in events)
    # A marker request: an automatic response would have been created before its answer.
    await client.send("conversation.item.retrieve", item_id=events[0]["item_id"])
    assert (await client.next())["type"] == "conversation.item.retrieved"

    # Server VAD with create_response false: the turn is detected and transcribed, no response.
    await client.send("session.update", session={"audio": {"input": {"turn_detection": {
        "type": "semantic_vad", "eagerness": "high", "create_response": False}}}})
    await client.until("session.updated")
    await stream_audio(client, utterance, audio.PCM)
    events = await client.until("conversation.item.done", timeout=60)
    assert "input_audio_buffer.speech_stopped" in [e["type"] for e in events]
    await client.send("conversation.item.retrieve", item_id=events[-1]["item"]["id"])
    assert (await client.next())["type"] == "conversation.item.retrieved"
    # input_audio_buffer.clear drops what was not committed.
    await client.send("input_audio_buffer.append", audio=base64.b64encode(b"\0" * 4800).decode())
    await client.send("input_audio_buffer.clear")
    assert (await client.next())["type"] == "input_audio_buffer.cleared"
    await client.send("input_audio_buffer.commit")
    assert (await client.next())["error"]["code"] == "input_audio_buffer_commit_empty"
    await client.send("response.create")
    done = (await client.until("response.done"))[-1]["response"]
    assert done["status"] == "completed" and done["usage"]["input_token_details"]["audio_tokens"] > 0
    await client.ws.close()


async def test_events_sent_back_to_back_are_answered_in_the_order_sent(agent):
    """Audio-side events (append, commit, clear) are processed by the session's input task; the events
    sent after them are answered only after them: a clear's answer comes before the next item's, and a
    commit followed at once by response.create (push to talk) answers with the committed turn first."""
    client = await connect(agent)
    await client.send("session.update", session={"audio": {"input": {"turn_detection": None}}})
    await client.until("session.updated")
    half_second_of_silence = base64.b64encode(b"\0" * 24000).decode()
    await client.send("input_audio_buffer.append", audio=half_second_of_silence)
    await client.send("input_audio_buffer.clear")
    await client.send("conversation.item.create", item={
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello there"}]})
    await client.send("input_audio_buffer.append", audio=half_second_of_silence)
    await client.send("input_audio_buffer.commit")
    await client.send("response.create")
    events = await client.until("response.done", timeout=60)

    def milestone(event: dict) -> str | None:
        if event["type"] == "conversation.item.added" and event["item"].get("role") == "user":
            return "added " + event["item"]["content"][0]["type"]
        if event["type"] in ("input_audio_buffer.cleared", "input_audio_buffer.committed", "response.created",
                             "response.done", "error"):
            return event["type"]
        return None

    assert [m for e in events if (m := milestone(e))] == [
        "input_audio_buffer.cleared", "added input_text", "input_audio_buffer.committed", "added input_audio",
        "response.created", "response.done"]
    assert events[-1]["response"]["usage"]["input_token_details"]["audio_tokens"] > 0  # the turn is in it
    await client.ws.close()


async def test_replies_come_from_a_configured_chat_completions_endpoint(server_factory):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for word in ("Paris", " is", " lovely."):
                self.wfile.write(f"data: {json.dumps({'choices': [{'delta': {'content': word}}]})}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")

        def log_message(self, *args):
            pass

    llm = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=llm.serve_forever, name="chat-completions", daemon=True)
    thread.start()
    try:
        agent = server_factory(env={"LOCAL_AGENT_SECRET": SECRET,
                                    "LOCAL_AGENT_LLM_URL": f"http://127.0.0.1:{llm.server_address[1]}/v1/chat/completions"},
                               argv=[sys.executable, "manage.py", "run_local_agent", "--port", "{port}"])
        client = await connect(agent)
        await client.send("conversation.item.create", item={"type": "message", "role": "user",
                                                            "content": [{"type": "input_text", "text": "Tell me about Paris"}]})
        await client.send("response.create")
        events = await client.until("response.done")
        assert next(e for e in events if e["type"] == "response.output_audio_transcript.done")["transcript"] == "Paris is lovely."
        assert audio_of(events)
        await client.ws.close()
    finally:
        llm.shutdown()
        thread.join()

    # An endpoint that is down fails the response, not the session.
    from tests.conftest import free_port

    agent = server_factory(env={"LOCAL_AGENT_SECRET": SECRET,
                                "LOCAL_AGENT_LLM_URL": f"http://127.0.0.1:{free_port()}/v1/chat/completions"},
                           argv=[sys.executable, "manage.py", "run_local_agent", "--port", "{port}"])
    client = await connect(agent)
    await client.send("conversation.item.create", item={"type": "message", "role": "user",
                                                        "content": [{"type": "input_text", "text": "Hello?"}]})
    await client.send("response.create")
    done = (await client.until("response.done"))[-1]["response"]
    assert done["status"] == "failed" and done["status_details"]["error"]["code"] == "llm_failed"
    await client.send("conversation.item.retrieve", item_id="nope")
    assert (await client.next())["error"]["code"] == "item_not_found"
    await client.ws.close()
