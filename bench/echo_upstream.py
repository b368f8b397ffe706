"""A stand-in upstream realtime agent for the relay benchmark: it speaks just enough of the realtime
protocol (seed 004) for a relay to treat it as an agent, and echoes every other client event back
verbatim so the client can time a round trip and check sequence numbers.

    session.created     sent on connect
    session.update      answered with session.updated (the gateway configures agents this way)
    anything else       echoed back unchanged, byte for byte

Run: ``python bench/echo_upstream.py --port 0`` prints ``READY <port>`` once it listens.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import uuid

import websockets
from websockets.asyncio.server import ServerConnection, serve

# Spawned by bench/relay.py, not a benchmark itself: bench/run_all.py skips it.
BENCH_HELPER = True

# Only frames this short can be control events worth parsing; audio appends are echoed untouched so
# the upstream's own cost stays the same small constant for every relay being compared.
PARSE_LIMIT = 1024


def _session(session_id: str, update: dict | None = None) -> dict:
    session = {"id": session_id, "object": "realtime.session", "type": "realtime", "model": "echo"}
    session.update(update or {})
    return session


async def handle(ws: ServerConnection) -> None:
    session_id = "sess_" + uuid.uuid4().hex[:20]
    await ws.send(json.dumps({"type": "session.created", "event_id": "evt_created", "session": _session(session_id)}))
    try:
        async for message in ws:
            if isinstance(message, str) and len(message) < PARSE_LIMIT:
                try:
                    event = json.loads(message)
                except ValueError:
                    event = None
                if isinstance(event, dict) and event.get("type") == "session.update":
                    update = event.get("session") if isinstance(event.get("session"), dict) else {}
                    await ws.send(json.dumps({"type": "session.updated", "session": _session(session_id, update)}))
                    continue
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass


async def main(host: str, port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(handle, host, port, compression=None, max_size=16 * 1024 * 1024, ping_interval=None) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"READY {bound}", flush=True)
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        sys.exit("the echo upstream only listens on loopback")
    asyncio.run(main(args.host, args.port))
