"""Dialects benchmark: what the tasks, conversation and rooms adapters cost on top of their references.

Per run, on fresh processes on loopback (a throwaway PostgreSQL database, Redis): the gateway
(project.asgi:application) under uvicorn with the production options of README.md, with and without
REDIS_URL, and under daphne (as the live tests serve it; tasks only), and the references:
  tasks ping       one connection, sequential ``ping`` tasks: round-trip p50/p95. A result goes
                   straight to the connection of its session and is confirmed by a WebSocket ping
                   (one per 50 ms of results). Reference: bench/tasks_reference.py, the same
                   exchange with no auth, database, buffer or confirmation.
  tasks throughput CONNECTIONS connections, each keeping WINDOW pings in flight: tasks per second.
  conversation     one connection, sequential ConversationRequests answered by the built-in local agent
                   (text): p50 per turn. Reference: the same turn through the realtime dialect
                   (conversation.item.create + response.create until response.done) on the same server,
                   on a connection open alongside: the two alternate in blocks of turns, so both meet
                   the same load on the shared machine.
  rooms fan-out    ROOM_CLIENTS Socket.IO clients in one room (python-socketio's AsyncClient, WebSocket
                   transport); one of them sends: the time until every client has a message (p50 over
                   sequential messages), and deliveries per second for a burst. Reference:
                   bench/rooms_reference.py, a bare python-socketio server under the same server
                   (uvicorn) as the gateway.

Medians over runs; ratios are taken within each run, then their median. ``python bench/dialects.py``
writes the dialects section of bench/README.md and bench/results/dialects.json; ``--no-write`` prints.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import orjson
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from relay import (  # noqa: E402  (bench helpers: processes, database, machine description)
    BASE_DIR,
    GATEWAY_ENV,
    free_port,
    machine,
    percentile,
    prepare_database,
    server_commands,
    start_server,
)
from support import django_setup, readme_section_write  # noqa: E402

README = BASE_DIR / "bench" / "README.md"
RESULTS = BASE_DIR / "bench" / "results" / "dialects.json"
SECTION_BEGIN = "<!-- dialects:begin (written by bench/dialects.py; edit the script, not this section) -->"
SECTION_END = "<!-- dialects:end -->"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/switchboard_bench_dialects"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"
# Persistent database connections, as in production: the conversation dialect writes each exchange.
BENCH_ENV = {**GATEWAY_ENV, "TASKS_MAX_PENDING": "1000", "DATABASE_CONN_MAX_AGE": "60",
             "ROOMS_MESSAGES_PER_SECOND": "1000000", "ROOMS_MESSAGE_BURST": "1000000",
             "REALTIME_MAX_SESSIONS_PER_KEY": "1000"}


def gateway_env(database_url: str, redis_url: str | None) -> dict:
    env = os.environ.copy()
    env.update(DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="project.settings", PYTHONUNBUFFERED="1",
               **BENCH_ENV)
    env.setdefault("SECRET_KEY", "bench-dialects-" + "x" * 40)
    env.pop("TEST_DATABASE_NAME", None)
    if redis_url:
        env.update(REDIS_URL=redis_url, REDIS_PREFIX="switchboard-bench-dialects")
    else:
        env.pop("REDIS_URL", None)
    return env


def create_bench_key(database_url: str) -> tuple[str, str]:
    """A project (its default deployments use the built-in local agent) and a development key.
    Returns (raw key, the development deployment key)."""
    django_setup(database_url=database_url, label="dialects")
    from accounts.models import EnvironmentKind, User
    from accounts.services import api_key_create, project_create

    user = User.objects.create_user(email="bench-dialects@example.com", password=None)
    project = project_create(name="Dialects bench", owner=user)
    environment = project.environments.get(kind=EnvironmentKind.DEVELOPMENT)
    _row, raw = api_key_create(project=project, environment=environment, name="bench", created_by=user)
    return raw, project.deployments.get(environment=environment, is_default=True).deployment_key


# --- Clients --------------------------------------------------------------------------------------

async def tasks_open(url: str, key: str):
    ws = await websockets.connect(url, compression=None, max_size=None)
    await ws.send(json.dumps({"newConnection": {"apiKey": key}}))
    assert "newConnectionSessionUUID" in json.loads(await ws.recv())
    return ws


def ping() -> tuple[str, str]:
    task_uuid = str(uuid.uuid4())
    return task_uuid, orjson.dumps({"taskType": "ping", "taskUUID": task_uuid}).decode()


async def tasks_pings(ws, count: int) -> list[float]:
    times = []
    for _ in range(count):
        task_uuid, text = ping()
        started = time.perf_counter()
        await ws.send(text)
        answer = orjson.loads(await ws.recv())
        times.append((time.perf_counter() - started) * 1000)
        assert answer["data"][0]["taskUUID"] == task_uuid
    return times


PING_BLOCKS = 5


async def tasks_latency_alternating(urls: dict[str, str], key: str, count: int) -> dict[str, list[float]]:
    """``count`` pings per target on one connection each, the targets taking turns in blocks (each
    block in another order), so the gateways and the reference meet the same load."""
    sockets = {name: await tasks_open(url, key) for name, url in urls.items()}
    times: dict[str, list[float]] = {name: [] for name in urls}
    try:
        for ws in sockets.values():
            await tasks_pings(ws, 20)  # warm-up: connections, caches
        names = list(urls)
        for number in range(PING_BLOCKS):
            for name in names[number % len(names):] + names[:number % len(names)]:
                times[name] += await tasks_pings(sockets[name], max(1, count // PING_BLOCKS))
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets.values()))
    return times


async def tasks_throughput(url: str, key: str, connections: int, per_connection: int, window: int) -> float:
    sockets = [await tasks_open(url, key) for _ in range(connections)]

    async def drive(ws):
        sent = received = 0
        while sent < min(window, per_connection):
            await ws.send(ping()[1])
            sent += 1
        while received < per_connection:
            assert "data" in orjson.loads(await ws.recv())
            received += 1
            if sent < per_connection:
                await ws.send(ping()[1])
                sent += 1

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(drive(ws) for ws in sockets)), 300)
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(ws.close() for ws in sockets))
    return connections * per_connection / elapsed


async def conversation_open(server_url: str, key: str, deployment_key: str):
    query = urlencode({"apiKey": key, "deploymentKey": deployment_key, "channelKey": "bench-en-US"})
    ws = await websockets.connect(f"{server_url}/v1/conversation?{query}", compression=None)
    json.loads(await ws.recv())
    return ws


async def conversation_turns(ws, count: int) -> list[float]:
    times = []
    for n in range(count):
        started = time.perf_counter()
        await ws.send(json.dumps({"request": {"unstructured": {"text": f"turn number {n}"}}, "userId": "bench"}))
        assert "messages" in json.loads(await ws.recv())
        times.append((time.perf_counter() - started) * 1000)
    return times


async def realtime_open(server_url: str, key: str):
    ws = await websockets.connect(f"{server_url}/v1/realtime", compression=None,
                                  additional_headers={"Authorization": f"Bearer {key}"})
    await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime",
                                                                      "output_modalities": ["text"]}}))
    return ws


async def realtime_turns(ws, count: int) -> list[float]:
    times = []
    for n in range(count):
        started = time.perf_counter()
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": f"turn number {n}"}]}}))
        await ws.send(json.dumps({"type": "response.create"}))
        while json.loads(await ws.recv()).get("type") != "response.done":
            pass
        times.append((time.perf_counter() - started) * 1000)
    return times


TURN_BLOCKS = 6


async def turns_alternating(server_url: str, key: str, deployment_key: str, count: int) -> dict[str, float]:
    """Conversation and realtime turns on two connections open side by side, in alternating blocks
    (each leading every other block): p50 per turn of each."""
    conversation = await conversation_open(server_url, key, deployment_key)
    realtime = await realtime_open(server_url, key)
    times: dict[str, list[float]] = {"conversation": [], "realtime": []}
    try:
        await conversation_turns(conversation, 3)  # warm-up
        await realtime_turns(realtime, 3)
        block = max(1, count // TURN_BLOCKS)
        for number in range(TURN_BLOCKS):
            order = ("conversation", "realtime") if number % 2 == 0 else ("realtime", "conversation")
            for name in order:
                if name == "conversation":
                    times[name] += await conversation_turns(conversation, block)
                else:
                    times[name] += await realtime_turns(realtime, block)
    finally:
        await asyncio.gather(conversation.close(), realtime.close())
    return {name: statistics.median(values) for name, values in times.items()}


async def rooms_open(http_url: str, key: str | None, count: int):
    import socketio

    clients = []
    for n in range(count):
        client = socketio.AsyncClient(reconnection=False)
        inbox: asyncio.Queue = asyncio.Queue()
        client.on("message", inbox.put_nowait)
        await client.connect(http_url, auth={"apiKey": key} if key else None, transports=["websocket"],
                             wait_timeout=30)
        clients.append((client, inbox))
    return clients


async def rooms_fanout(http_url: str, key: str | None, clients: int, messages: int, burst: int) -> dict:
    room = await rooms_open(http_url, key, clients)
    sender = room[0][0]
    try:
        times = []
        for n in range(messages):
            text = f"m{n}"
            started = time.perf_counter()
            await sender.emit("message", text)
            for _client, inbox in room:
                while await asyncio.wait_for(inbox.get(), 30) != text:
                    pass
            times.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        for n in range(burst):
            await sender.emit("message", f"b{n}")
        last = f"b{burst - 1}"
        for _client, inbox in room:
            while await asyncio.wait_for(inbox.get(), 60) != last:
                pass
        elapsed = time.perf_counter() - started
    finally:
        await asyncio.gather(*(client.disconnect() for client, _ in room))
    return {"p50": statistics.median(times), "p95": percentile(times, 0.95),
            "deliveries_per_s": clients * burst / elapsed}


# --- Runs -----------------------------------------------------------------------------------------

# Gateways measured: (name, server, with REDIS_URL). uvicorn is the production server (README.md,
# "Running several processes"); daphne serves the live tests. daphne's own floor (a bare ASGI app
# answering pings) is about 1.7x the reference: the daphne row shows the server, not the dialect.
GATEWAYS = (("gateway-redis", "uvicorn", True), ("gateway-inprocess", "uvicorn", False),
            ("gateway-daphne", "daphne", True))


def start_run(args, logs: Path, number: int):
    commands = server_commands(sys.executable)
    servers = {}
    for name, server, with_redis in GATEWAYS:
        port = free_port()
        servers[name] = start_server(f"{name}-{number}", [p.replace("{port}", str(port)) for p in commands[server]],
                                     gateway_env(args.database_url, args.redis_url if with_redis else None), logs, port)
    port = free_port()
    servers["reference"] = start_server(f"reference-{number}",
                                        [sys.executable, "bench/tasks_reference.py", "--port", str(port)],
                                        os.environ.copy(), logs, port)
    port = free_port()
    floor = [p.replace("{port}", str(port)).replace("project.asgi:application", "bench.tasks_asgi_reference:application")
             for p in commands["daphne"]]
    servers["daphne-floor"] = start_server(f"daphne-floor-{number}", floor, os.environ.copy(), logs, port)
    port = free_port()
    rooms = [p.replace("{port}", str(port)).replace("project.asgi:application", "bench.rooms_reference:application")
             for p in commands["uvicorn"]]
    servers["rooms-reference"] = start_server(f"rooms-reference-{number}", rooms, os.environ.copy(), logs, port)
    return servers


async def one_run(servers, key: str, deployment_key: str, args) -> dict:
    result: dict = {"ping": {}, "throughput": {}, "turns": {}, "rooms": {}}
    urls = {name: f"ws://127.0.0.1:{server.port}" + ("/v1/" if name.startswith("gateway") else "/")
            for name, server in servers.items() if name != "rooms-reference"}
    for name, times in (await tasks_latency_alternating(urls, key, args.pings)).items():
        result["ping"][name] = {"p50": statistics.median(times), "p95": percentile(times, 0.95)}
    for name, url in urls.items():
        result["throughput"][name] = await tasks_throughput(url, key, args.connections, args.per_connection,
                                                            args.window)
    gateway = f"ws://127.0.0.1:{servers['gateway-redis'].port}"
    result["turns"] = await turns_alternating(gateway, key, deployment_key, args.turns)
    for name in ("gateway-redis", "gateway-inprocess", "rooms-reference"):
        http_url = f"http://127.0.0.1:{servers[name].port}"
        credential = None if name == "rooms-reference" else key
        await rooms_fanout(http_url, credential, 2, 5, 10)  # warm-up
        result["rooms"][name] = await rooms_fanout(http_url, credential, args.room_clients, args.room_messages,
                                                   args.room_burst)
    return result


def summarize(runs: list[dict]) -> dict:
    med = statistics.median
    names = list(runs[0]["ping"])
    return {
        "ping": {name: {"p50": med(r["ping"][name]["p50"] for r in runs), "p95": med(r["ping"][name]["p95"] for r in runs),
                        "x_reference": med(r["ping"][name]["p50"] / r["ping"]["reference"]["p50"] for r in runs)}
                 for name in names},
        "throughput": {name: {"per_s": med(r["throughput"][name] for r in runs),
                              "x_reference": med(r["throughput"][name] / r["throughput"]["reference"] for r in runs)}
                       for name in names},
        "rooms": {name: {"p50": med(r["rooms"][name]["p50"] for r in runs),
                         "p95": med(r["rooms"][name]["p95"] for r in runs),
                         "deliveries_per_s": med(r["rooms"][name]["deliveries_per_s"] for r in runs),
                         "x_reference": med(r["rooms"][name]["p50"] / r["rooms"]["rooms-reference"]["p50"] for r in runs),
                         "throughput_x_reference": med(r["rooms"][name]["deliveries_per_s"]
                                                       / r["rooms"]["rooms-reference"]["deliveries_per_s"] for r in runs)}
                  for name in runs[0]["rooms"]},
        "turns": {"conversation": med(r["turns"]["conversation"] for r in runs),
                  "realtime": med(r["turns"]["realtime"] for r in runs),
                  "x_realtime": med(r["turns"]["conversation"] / r["turns"]["realtime"] for r in runs)},
    }


def render(summary: dict, meta: dict) -> str:
    out = [SECTION_BEGIN, "## Dialects (`bench/dialects.py`)", "",
           f"Measured {meta['date']} on {meta['machine']}. Median of {meta['runs']} runs (fresh processes each); "
           f"ratios are taken within each run (gateway and reference measured side by side), then their median. "
           f"The machine is shared with other engineers' test runs and was "
           f"{'busy' if max(meta['load_before'], meta['load_after']) > 1.5 else 'quiet'}: the 1-minute load average "
           f"was {meta['load_before']:.1f} before and {meta['load_after']:.1f} after; absolute times are noisy, "
           "the ratios less so.",
           "", "Run: `.venv/bin/python bench/dialects.py` (`--help` for options). Needs PostgreSQL and Redis on loopback.",
           "",
           f"**Tasks** (`ws /v1/`): `ping` round trips on one connection per target ({meta['pings']} per run; the "
           "targets take turns in blocks of pings, so each meets the same load), and throughput with "
           f"{meta['connections']} connections keeping {meta['window']} pings in flight each. The gateway runs under "
           "uvicorn with the production options of README.md (uvloop, httptools, websockets-sansio). *gateway-redis*: "
           "REDIS_URL set (session registry and redelivery buffer in Redis; a result for a client attached to "
           "the same process goes straight to it, confirmed by one WebSocket ping per 50 ms of results); "
           "*gateway-inprocess*: the embedded defaults (no REDIS_URL); *gateway-daphne*: gateway-redis under daphne, "
           "as the live tests serve it; *daphne-floor*: `bench/tasks_asgi_reference.py`, a bare ASGI application "
           "answering pings under daphne (daphne's own cost, without the gateway); *reference*: "
           "`bench/tasks_reference.py`, the same exchange on a bare `websockets` server.", "",
           "| target | p50 ms | p95 ms | p50 × reference | tasks/s | throughput × reference |",
           "|---|---:|---:|---:|---:|---:|"]
    for name, row in summary["ping"].items():
        t = summary["throughput"][name]
        out.append(f"| {name} | {row['p50']:.3f} | {row['p95']:.3f} | {row['x_reference']:.2f} | "
                   f"{t['per_s']:,.0f} | {t['x_reference']:.2f} |")
    turns = summary["turns"]
    out += ["", f"**Conversation** (`ws /v1/conversation`, built-in local agent, text): median per turn over "
            f"{meta['turns']} turns, against the same turn through the realtime dialect on the same server (gateway-redis, "
            "uvicorn), on two connections open side by side taking turns in blocks of turns. The conversation "
            "dialect also stores each exchange (after the answer has left, by one writer per connection); the gateway "
            "runs with `DATABASE_CONN_MAX_AGE=60` (persistent database connections, as in production).", "",
            "| dialect | p50 ms per turn |", "|---|---:|",
            f"| conversation | {turns['conversation']:.2f} |", f"| realtime (reference) | {turns['realtime']:.2f} |",
            f"| ratio | {turns['x_realtime']:.2f}× |",
            f"| difference | {turns['conversation'] - turns['realtime']:+.2f} ms |", "",
            f"**Rooms fan-out** (`/socket.io/`, WebSocket transport): {meta['room_clients']} clients in one room, one "
            f"of them sending; p50/p95 of the time until every client has a message ({meta['room_messages']} "
            f"sequential messages), and deliveries per second for a burst of {meta['room_burst']}. *rooms-reference*: "
            "`bench/rooms_reference.py`, a bare python-socketio server under uvicorn (the gateway's server and options). "
            "*gateway-redis* broadcasts through python-socketio's Redis manager (as across processes).", "",
            "| target | p50 ms | p95 ms | p50 × reference | deliveries/s | throughput × reference |",
            "|---|---:|---:|---:|---:|---:|"]
    for name, row in summary["rooms"].items():
        out.append(f"| {name} | {row['p50']:.2f} | {row['p95']:.2f} | {row['x_reference']:.2f} | "
                   f"{row['deliveries_per_s']:,.0f} | {row['throughput_x_reference']:.2f} |")
    out += ["", SECTION_END]
    return "\n".join(out)


def write_section(section: str) -> None:
    readme_section_write(name="dialects", section=section)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Dialects benchmark (see the module docstring).")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pings", type=int, default=500)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--per-connection", type=int, default=300)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--room-clients", type=int, default=20)
    parser.add_argument("--room-messages", type=int, default=100)
    parser.add_argument("--room-burst", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="1 run, fewer events (implies --no-write)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL))
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.pings, args.per_connection, args.turns, args.no_write = 1, 100, 50, 5, True
        args.room_messages, args.room_burst = 20, 50
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="bench-dialects-"))
    print(f"server logs in {logs}", flush=True)
    prepare_database(args.database_url)
    key, deployment_key = create_bench_key(args.database_url)
    load_before = os.getloadavg()[0]
    runs = []
    for number in range(1, args.runs + 1):
        servers = start_run(args, logs, number)
        try:
            runs.append(asyncio.run(one_run(servers, key, deployment_key, args)))
        finally:
            for server in servers.values():
                server.stop()
        print(f"run {number}: {json.dumps(runs[-1])}", flush=True)
    summary = summarize(runs)
    meta = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(), "runs": args.runs,
            "pings": args.pings, "connections": args.connections, "window": args.window, "turns": args.turns,
            "room_clients": args.room_clients, "room_messages": args.room_messages, "room_burst": args.room_burst,
            "load_before": load_before, "load_after": os.getloadavg()[0]}
    section = render(summary, meta)
    print(section)
    if not args.no_write:
        write_section(section)
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
