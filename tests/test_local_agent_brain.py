"""The local agent's brain: the built-in assistant, and an OpenAI-compatible chat-completions endpoint
(a real HTTP server streaming server-sent events on loopback)."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from realtime.local_agent import brain

pytestmark = pytest.mark.unit


def user(text):
    return {"id": "item_1", "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


async def reply(items, tools=(), tool_choice="auto"):
    return [o async for o in brain.brain_reply(items=items, instructions="Be kind.", tools=list(tools), tool_choice=tool_choice)]


WEATHER = {"type": "function", "name": "get_weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


async def test_builtin_repeats_what_it_heard(settings):
    settings.LOCAL_AGENT_LLM_URL = None
    text = "".join(o.text for o in await reply([user("I like trains")]))
    assert "I like trains" in text
    assert "UTC" in "".join(o.text for o in await reply([user("what time is it")]))


async def test_builtin_calls_a_named_tool_and_reads_its_output(settings):
    settings.LOCAL_AGENT_LLM_URL = None
    outputs = await reply([user("what is the weather in New York?")], tools=[WEATHER])
    assert outputs == [brain.FunctionCall(name="get_weather", arguments=json.dumps({"city": "New York"}))]
    assert not any(isinstance(o, brain.FunctionCall) for o in await reply([user("hello")], tools=[WEATHER]))
    assert not any(isinstance(o, brain.FunctionCall) for o in
                   await reply([user("weather in Oslo")], tools=[WEATHER], tool_choice="none"))
    items = [user("weather in Oslo"), {"type": "function_call", "name": "get_weather", "call_id": "c1", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "c1", "output": "rain"}]
    assert "rain" in "".join(o.text for o in await reply(items, tools=[WEATHER]))


@pytest.fixture
def chat_server():
    """A chat-completions endpoint streaming SSE; records the request bodies it got."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((json.loads(self.rfile.read(int(self.headers["Content-Length"]))), self.headers["Authorization"]))
            if self.path == "/fail":
                self.send_response(500)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            chunks = [{"choices": [{"delta": {"content": "Hello"}}]}, {"choices": [{"delta": {"content": " world."}}]},
                      {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "get_weather", "arguments": "{\"ci"}}]}}]},
                      {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "ty\": \"Rome\"}"}}]}}]}]
            for chunk in chunks:
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="chat-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    thread.join()


async def test_llm_endpoint_is_streamed_as_deltas_and_tool_calls(settings, chat_server):
    url, received = chat_server
    settings.LOCAL_AGENT_LLM_URL = url + "/v1/chat/completions"
    settings.LOCAL_AGENT_LLM_API_KEY = "llm-key"
    outputs = await reply([user("hi")], tools=[WEATHER])
    assert outputs == [brain.TextDelta("Hello"), brain.TextDelta(" world."),
                       brain.FunctionCall(name="get_weather", arguments='{"city": "Rome"}')]
    body, authorization = received[0]
    assert body["stream"] is True and body["messages"][0] == {"role": "system", "content": "Be kind."}
    assert body["messages"][1] == {"role": "user", "content": "hi"}
    assert body["tools"][0]["function"]["name"] == "get_weather" and authorization == "Bearer llm-key"


async def test_llm_failure_is_a_brain_error(settings, chat_server):
    url, _ = chat_server
    settings.LOCAL_AGENT_LLM_URL = url + "/fail"
    with pytest.raises(brain.BrainError):
        await reply([user("hi")])
