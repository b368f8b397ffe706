"""The reference for the relay benchmark: the smallest correct WebSocket relay one can write with the
``websockets`` library. Each client connection gets one upstream connection and two pump tasks;
frames pass through untouched (no parsing, no auth, no metering, no limits).

Run: ``python bench/minimal_relay.py --upstream ws://127.0.0.1:9000/`` prints ``READY <port>``.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

# Spawned by bench/relay.py, not a benchmark itself: bench/run_all.py skips it.
BENCH_HELPER = True

MAX_FRAME = 16 * 1024 * 1024


async def _pump(source, sink) -> None:
    try:
        async for message in source:
            await sink.send(message)
    except websockets.ConnectionClosed:
        pass
    finally:
        await sink.close()


def make_handler(upstream_url: str):
    async def handle(client: ServerConnection) -> None:
        async with connect(upstream_url, compression=None, max_size=MAX_FRAME, ping_interval=None) as upstream:
            pumps = [
                asyncio.create_task(_pump(client, upstream), name="relay-client-to-upstream"),
                asyncio.create_task(_pump(upstream, client), name="relay-upstream-to-client"),
            ]
            _done, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    return handle


async def main(host: str, port: int, upstream_url: str) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(make_handler(upstream_url), host, port, compression=None, max_size=MAX_FRAME,
                     ping_interval=None) as server:
        print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop instead of asyncio's own loop")
    args = parser.parse_args()
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        sys.exit("the minimal relay only listens on loopback")
    if args.uvloop:
        import uvloop

        uvloop.run(main(args.host, args.port, args.upstream))
    else:
        asyncio.run(main(args.host, args.port, args.upstream))
