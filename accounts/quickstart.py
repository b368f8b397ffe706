"""Quickstart code: one copy-ready snippet per way of connecting, filled in with this server's URL, a
deployment key and (once, on the page that shows a new key) the key itself.

Every page that shows code (the project page, the new-key page, the console's "View code") renders it
from here, so the tests run exactly what a newcomer copies. Nothing here reads the database or a
request: callers pass the values in.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

KEY_PLACEHOLDER = "YOUR_SWITCHBOARD_API_KEY"
TOKEN_PLACEHOLDER = "TOKEN_FROM_YOUR_BACKEND"


@dataclass(frozen=True)
class QuickstartConfig:
    """What the snippets are filled in with. ``api_key`` empty: the placeholder."""

    base_url: str  # http(s)://host[:port] of this server
    deployment_key: str = ""
    api_key: str = ""
    session: dict = field(default_factory=dict)  # session.update fields (instructions, audio, tools…)

    @property
    def ws_url(self) -> str:
        parts = urlsplit(self.base_url.rstrip("/"))
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path, "", ""))

    @property
    def key(self) -> str:
        return self.api_key or KEY_PLACEHOLDER


@dataclass(frozen=True)
class Snippet:
    slug: str  # stable id, used in element ids
    title: str
    language: str
    code: str
    explanation: str


def _session(config: QuickstartConfig, *, text_only: bool) -> dict:
    session = {"type": "realtime", **config.session}
    if text_only and "output_modalities" not in session:
        session["output_modalities"] = ["text"]
    return session


def session_from_console(*, instructions: str = "", voice: str = "", turn_detection: str = "",
                         silence_duration_ms: str = "", output: str = "", tools: str = "") -> dict:
    """The ``session`` of the console's "Apply settings", from its form fields (as the console's script
    builds it), for "View code". Anything unreadable is left out rather than guessed."""
    session: dict = {}
    if instructions:
        session["instructions"] = instructions[:20000]
    if output in ("audio", "text"):
        session["output_modalities"] = [output]
    audio: dict = {}
    if turn_detection == "none":
        audio["input"] = {"turn_detection": None}
    elif turn_detection == "semantic_vad":
        audio["input"] = {"turn_detection": {"type": "semantic_vad"}}
    elif turn_detection == "server_vad":
        detection: dict = {"type": "server_vad"}
        if silence_duration_ms.isdigit():
            detection["silence_duration_ms"] = int(silence_duration_ms)
        audio["input"] = {"turn_detection": detection}
    if voice:
        audio["output"] = {"voice": voice[:100]}
    if audio:
        session["audio"] = audio
    try:
        parsed = json.loads(tools) if tools else []
    except ValueError:
        parsed = []
    if isinstance(parsed, list) and parsed:
        session["tools"] = parsed
    return session


def _py_json(value) -> str:
    text = json.dumps(value, indent=4)
    return text.replace(": true", ": True").replace(": false", ": False").replace(": null", ": None")


def python_snippet(config: QuickstartConfig) -> str:
    query = f', extra_query={{"deployment": {config.deployment_key!r}}}' if config.deployment_key else ""
    session = _py_json(_session(config, text_only=True)).replace("\n", "\n        ")
    return f'''# pip install "openai>=2" websockets
import asyncio

from openai import AsyncOpenAI

API_KEY = {config.key!r}

client = AsyncOpenAI(api_key=API_KEY, websocket_base_url="{config.ws_url}/v1")


async def main() -> None:
    async with client.realtime.connect(model="gpt-realtime"{query}) as connection:
        await connection.session.update(session={session})
        await connection.conversation.item.create(item={{
            "type": "message", "role": "user",
            "content": [{{"type": "input_text", "text": "Hello from the quickstart"}}],
        }})
        await connection.response.create()
        async for event in connection:
            if event.type in ("response.output_text.delta", "response.output_audio_transcript.delta"):
                print(event.delta, end="", flush=True)
            elif event.type == "error":
                raise SystemExit(f"error: {{event.error.code}}: {{event.error.message}}")
            elif event.type == "response.done":
                print()
                print("turn complete:", event.response.status)
                break


asyncio.run(main())
'''


def curl_token_snippet(config: QuickstartConfig) -> str:
    body: dict = {"ttl_seconds": 300}
    if config.deployment_key:
        body["deployment"] = config.deployment_key
    if config.session:
        body["session"] = config.session
    return (f"curl -sS -X POST {config.base_url}/api/v1/tokens \\\n"
            f"  -H 'Authorization: Bearer {config.key}' \\\n"
            f"  -H 'Content-Type: application/json' \\\n"
            f"  -d '{json.dumps(body)}'\n"
            "# → {\"token\": \"eyJ…\", \"expires_at\": \"…\"}: hand the token to the browser, never the key\n")


def browser_snippet(config: QuickstartConfig) -> str:
    query = f"?deployment={config.deployment_key}" if config.deployment_key else ""
    session = json.dumps(_session(config, text_only=True), indent=2).replace("\n", "\n  ")
    return f'''// In the browser. Your backend mints the token with your API key (see "curl: mint a token").
const token = "{TOKEN_PLACEHOLDER}";
const ws = new WebSocket("{config.ws_url}/v1/realtime{query}", ["realtime", "switchboard-jwt." + token]);

ws.addEventListener("open", () => {{
  ws.send(JSON.stringify({{ type: "session.update", session: {session} }}));
  ws.send(JSON.stringify({{
    type: "conversation.item.create",
    item: {{ type: "message", role: "user", content: [{{ type: "input_text", text: "Hello from the browser" }}] }},
  }}));
  ws.send(JSON.stringify({{ type: "response.create" }}));
}});

ws.addEventListener("message", (message) => {{
  const event = JSON.parse(message.data);
  if (event.type === "response.output_text.delta" || event.type === "response.output_audio_transcript.delta") {{
    console.log(event.delta);
  }}
  if (event.type === "error") console.error(event.error.code, event.error.message);
  if (event.type === "response.done") ws.close();
}});
'''


def node_ws_snippet(config: QuickstartConfig) -> str:
    session = json.dumps(_session(config, text_only=True), indent=2).replace("\n", "\n    ")
    return f'''// npm install ws   (seed 004's Node.js example, pointed at Switchboard)
import WebSocket from 'ws';

const sessionId = `my-app-${{Date.now()}}`;
const credentials = process.env.SWITCHBOARD_API_KEY || '{config.key}';

const ws = new WebSocket(`{config.ws_url}/api/v1/realtime/session?key=${{sessionId}}&protocol=realtime`, {{
  headers: {{ Authorization: `Basic ${{credentials}}` }}
}});

ws.on('message', (buffer) => {{
  const message = JSON.parse(buffer.toString());
  switch (message.type) {{
    case 'session.created':
      ws.send(JSON.stringify({{ type: 'session.update', session: {session} }}));
      ws.send(JSON.stringify({{
        type: 'conversation.item.create',
        item: {{ type: 'message', role: 'user', content: [{{ type: 'input_text', text: 'Hello!' }}] }}
      }}));
      ws.send(JSON.stringify({{ type: 'response.create' }}));
      break;
    case 'response.output_text.delta':
    case 'response.output_audio_transcript.delta':
      process.stdout.write(message.delta);
      break;
    case 'response.done':
      console.log('\\nturn complete:', message.response.status);
      ws.close(1000); // a normal close ends the session; any other keeps it resumable for a while
      break;
    case 'error':
      console.error('error:', message.error.code, message.error.message);
      break;
  }}
}});
'''


def socketio_snippet(config: QuickstartConfig) -> str:
    return f'''// npm install socket.io-client   (the rooms dialect: every client of the key's project and
// environment receives each message, the sender included)
import {{ io }} from 'socket.io-client';

const socket = io('{config.base_url}', {{
  auth: {{ apiKey: process.env.SWITCHBOARD_API_KEY || '{config.key}' }},
  transports: ['websocket'],
}});

socket.on('connect', () => socket.emit('message', 'Hello, room!'));
socket.on('message', (message) => {{
  console.log('room message:', message);
  socket.close();
}});
socket.on('error', (error) => console.error('error:', error.code, error.message));
socket.on('connect_error', (error) => console.error('refused:', error.message));
'''


def snippets_for(config: QuickstartConfig) -> list[Snippet]:
    """Every snippet, in the order a newcomer reads them."""
    return [
        Snippet("python", "Python (openai SDK)", "python", python_snippet(config),
                "The official openai SDK's realtime client, pointed at this server: one text turn."),
        Snippet("curl-token", "curl: mint a browser token", "shell", curl_token_snippet(config),
                "Run on your backend: a short-lived token a browser may hold (the key never leaves your server)."),
        Snippet("browser", "Browser JavaScript", "javascript", browser_snippet(config),
                "A plain WebSocket from the page, authenticated by the minted token."),
        Snippet("node-ws", "Node.js (ws)", "javascript", node_ws_snippet(config),
                "Server-side Node.js with Basic auth, as in the realtime protocol's own example."),
        Snippet("socketio", "Node.js (socket.io-client)", "javascript", socketio_snippet(config),
                "The rooms dialect: broadcast messages between every client of the project."),
    ]
