"""Relay benchmark: round-trip latency, throughput, frame integrity and idle memory of 100 ms PCM16
appends (24 kHz mono -> 4800 bytes, base64) relayed through the Switchboard gateway, side by side with
a direct connection to the same upstream and with a minimal relay written with ``websockets``.

Every run starts fresh processes on loopback: the echo upstream (bench/echo_upstream.py), the minimal
relay (bench/minimal_relay.py) and the gateway (project.asgi:application) under each ASGI server of
``--servers`` (default: daphne, which ``make run`` uses, and uvicorn as documented for production),
one process each. The gateway reaches the echo upstream through a ``custom`` agent on a deployment of a
bench project in a throwaway PostgreSQL database; the client authenticates with an API key (Bearer).

Per run and per concurrency level (default 1, 50, 100 sessions), against each target:
  latency     closed loop: each session sends one append and waits for its echo (p50/p95 round trip)
  throughput  each session keeps WINDOW appends in flight; relayed round trips per second
  integrity   every append carries a sequence number; frames lost, duplicated or reordered are counted
  CPU         user+system CPU time the relay process (and its workers) spent per relayed round trip
              during the throughput phase: the cost of one event, much less disturbed by other load
              on the machine than events per second
and once per run, on fresh server processes: RSS of the relay process with N idle sessions minus its
baseline, divided by N. Also a micro-benchmark of stdlib json vs orjson on typical events.

Targets are measured one after the other, in the opposite order on every other run, so that load
from elsewhere on the machine does not always fall on the same target.

The results are medians over runs; ratios against the minimal relay are taken within each run, then
the median of those. ``python bench/relay.py`` writes the relay section of bench/README.md and
bench/results/relay.json; ``--no-write`` only prints.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import os
import platform
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
import websockets
from support import django_setup, readme_section_write
from websockets.asyncio.client import ClientConnection, connect

BASE_DIR = Path(__file__).resolve().parent.parent
BENCH_DIR = BASE_DIR / "bench"
README = BENCH_DIR / "README.md"
RESULTS = BENCH_DIR / "results" / "relay.json"
SECTION_BEGIN = "<!-- relay:begin (written by bench/relay.py; edit the script, not this section) -->"
SECTION_END = "<!-- relay:end -->"

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/switchboard_bench_relay"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/10"

# 100 ms of PCM16 mono at 24 kHz.
CHUNK_BYTES = 24_000 * 2 // 10
AUDIO_B64 = base64.b64encode(random.Random(4).randbytes(CHUNK_BYTES)).decode("ascii")

# Limits of the gateway are raised for the bench: it measures the relay, not the token bucket.
# Persistent database connections as in production (README, "Running several processes"): the usage
# flushes and key re-checks still run, without a new PostgreSQL connection each time.
GATEWAY_ENV = {
    "OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",  # the echo upstream is on loopback
    "DATABASE_CONN_MAX_AGE": "60",
    "DEBUG": "false",
    "SECURE_SSL_REDIRECT": "false",
    "LOG_LEVEL": "WARNING",
    "REALTIME_EVENTS_PER_SECOND": "1000000",
    "REALTIME_EVENT_BURST": "1000000",
    "REALTIME_MAX_SESSIONS_PER_KEY": "10000",
    "REALTIME_UPSTREAM_QUEUE_EVENTS": "1024",
}


def frame(phase: str, seq: int) -> str:
    return f'{{"type":"input_audio_buffer.append","event_id":"evt_{phase}{seq}","audio":"{AUDIO_B64}"}}'


# --- Processes ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    port: int
    log_path: Path

    def pids(self) -> list[int]:
        """The process and its descendants (granian and hypercorn serve from worker processes)."""
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(parent, []).append(int(entry.name))
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += children.get(pid, [])
        return found

    def rss_kib(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                total += int(re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M).group(1))
            except (OSError, AttributeError):
                pass
        return total

    def cpu_seconds(self) -> float:
        """CPU time of all threads so far, in nanosecond resolution (schedstat; /proc/<pid>/stat counts
        10 ms ticks, too coarse for a phase of a few seconds)."""
        nanoseconds = 0
        for pid in self.pids():
            for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
                try:
                    nanoseconds += int(task.read_text().split()[0])
                except (OSError, IndexError, ValueError):
                    continue
        return nanoseconds / 1e9

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _wait_listening(port: int, process: subprocess.Popen, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # readiness poll of a child process
    raise RuntimeError(f"{process.args} did not listen on {port}:\n{log_path.read_text(errors='replace')}")


def start_server(name: str, argv: list[str], env: dict, logs: Path, port: int) -> Server:
    log_path = logs / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(name, process, port, log_path)
    try:
        _wait_listening(port, process, log_path)
    except Exception:
        server.stop()
        raise
    return server


# --- Database and bench project -------------------------------------------------------------------

def prepare_database(database_url: str) -> None:
    """Drop and recreate the throwaway bench database, then migrate it."""
    from urllib.parse import urlparse

    import psycopg

    parsed = urlparse(database_url)
    name = parsed.path.lstrip("/")
    if parsed.scheme not in ("postgres", "postgresql") or not re.fullmatch(r"[a-z0-9_]+", name or ""):
        sys.exit("BENCH_DATABASE_URL must be a postgres:// URL naming a throwaway database ([a-z0-9_]+)")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=BASE_DIR, env=django_env(database_url, redis_url=None), check=True,
    )


def django_env(database_url: str, redis_url: str | None) -> dict:
    env = os.environ.copy()
    env.update(DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="project.settings", PYTHONUNBUFFERED="1")
    env.setdefault("SECRET_KEY", "bench-relay-" + "x" * 40)
    env.pop("TEST_DATABASE_NAME", None)
    if redis_url:
        env.update(REDIS_URL=redis_url, REDIS_PREFIX="switchboard-bench-relay")
    else:
        env.pop("REDIS_URL", None)
    env.update(GATEWAY_ENV)
    return env


def create_bench_project(database_url: str) -> tuple[str, int]:
    """A user, a project, a custom agent (its URL is set per run) on a development deployment, and
    an API key. Returns (raw key, agent pk)."""
    django_setup(database_url=database_url, label="relay")
    from accounts.models import Agent, Deployment, EnvironmentKind, Provider, User
    from accounts.services import api_key_create, project_create

    user = User.objects.create_user(email="bench@example.com", password=None)
    project = project_create(name="Relay bench", owner=user)
    environment = project.environments.get(kind=EnvironmentKind.DEVELOPMENT)
    agent = Agent.objects.create(project=project, name="Echo upstream", provider=Provider.CUSTOM,
                                 url="ws://127.0.0.1:9/", model="echo")
    # The echo agent becomes the environment's default, so the client needs no deployment parameter.
    Deployment.objects.filter(environment=environment).update(is_default=False)
    Deployment.objects.create(project=project, environment=environment, agent=agent, name="Echo", is_default=True)
    _row, raw = api_key_create(project=project, environment=environment, name="bench", created_by=user)
    return raw, agent.pk


def point_agent_at(agent_pk: int, url: str) -> None:
    from accounts.models import Agent

    Agent.objects.filter(pk=agent_pk).update(url=url)


# --- Client ---------------------------------------------------------------------------------------

@dataclass
class Tally:
    sent: int = 0
    received: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    errors: list = field(default_factory=list)

    def add(self, other: Tally) -> None:
        """Count ``other`` (a later turn of the same target) in this one."""
        self.sent += other.sent
        self.received += other.received
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.reordered += other.reordered
        self.errors = (self.errors + other.errors)[:5]

    def other(self, event: dict) -> None:
        if event.get("type") == "error":
            self.note(event.get("error"))

    def note(self, problem) -> None:
        if len(self.errors) < 5:
            self.errors.append(problem if isinstance(problem, (dict, str)) else repr(problem))

    def ended(self, exc: BaseException) -> None:
        """A phase ended early for one session: say how (timeout, or the close code and reason)."""
        if isinstance(exc, websockets.ConnectionClosed):
            self.note(f"closed: {exc.rcvd.code if exc.rcvd else None} {exc.rcvd.reason if exc.rcvd else ''}")
        else:
            self.note("timeout")


@dataclass
class Target:
    name: str
    url: str
    headers: dict
    server: Server | None  # the relay process whose memory is measured (None: direct)
    appends: int = 0  # input_audio_buffer.append events sent (the ledger check of --scale)
    connected_seconds: float = 0.0  # client-observed session time of closed sessions (same)
    opened_at: dict = field(default_factory=dict)  # ClientConnection -> perf_counter at connect


async def session_open(target: Target) -> ClientConnection:
    """Connect, then send one append and wait for its echo: the session is then fully relayed."""
    started = time.perf_counter()
    ws = await connect(target.url, additional_headers=target.headers, compression=None, max_size=16 * 1024 * 1024,
                       ping_interval=None, open_timeout=30)
    target.opened_at[ws] = started
    await ws.send(frame("warm", 0))
    target.appends += 1
    async with asyncio.timeout(30):
        while True:
            event = orjson.loads(await ws.recv())
            if event.get("event_id") == "evt_warm0":
                return ws
            if event.get("type") == "error":
                raise RuntimeError(f"{target.name}: error while opening a session: {event.get('error')}")


async def sessions_open(target: Target, count: int, concurrency: int = 20) -> list[ClientConnection]:
    gate = asyncio.Semaphore(concurrency)  # a burst of 100 handshakes at once only measures the accept backlog

    async def one():
        async with gate:
            return await session_open(target)

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def sessions_close(sockets: list[ClientConnection], target: Target | None = None) -> None:
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    if target is not None:
        closed = time.perf_counter()
        for ws in sockets:
            started = target.opened_at.pop(ws, None)
            if started is not None:
                target.connected_seconds += closed - started


def _seq(event: dict, phase: str) -> int | None:
    event_id = event.get("event_id")
    prefix = "evt_" + phase
    if isinstance(event_id, str) and event_id.startswith(prefix):
        return int(event_id[len(prefix):])
    return None


async def latency_phase(sockets: list[ClientConnection], per_session: int, timeout: float) -> tuple[list[float], Tally]:
    rtts: list[float] = []
    tally = Tally()

    async def loop(ws: ClientConnection):
        highest = -1
        for seq in range(per_session):
            started = time.perf_counter()
            await ws.send(frame("l", seq))
            tally.sent += 1
            while True:
                event = orjson.loads(await ws.recv())
                got = _seq(event, "l")
                if got is None:
                    tally.other(event)
                    continue
                if got <= highest:
                    tally.duplicated += 1
                    continue
                if got != seq:
                    tally.reordered += 1
                    continue
                rtts.append(time.perf_counter() - started)
                tally.received += 1
                highest = got
                break

    async def bounded(ws):
        try:
            async with asyncio.timeout(timeout):
                await loop(ws)
        except (TimeoutError, websockets.ConnectionClosed) as exc:
            tally.ended(exc)

    await asyncio.gather(*(bounded(ws) for ws in sockets))
    tally.lost = tally.sent - tally.received
    return rtts, tally


async def throughput_phase(sockets: list[ClientConnection], per_session: int, window: int,
                           timeout: float) -> tuple[float, Tally]:
    tally = Tally()
    received_at: list[float] = []

    async def stream(ws: ClientConnection):
        credit = asyncio.Semaphore(window)
        seen: set[int] = set()
        highest = -1

        async def sender():
            for seq in range(per_session):
                await credit.acquire()
                await ws.send(frame("t", seq))
                tally.sent += 1

        task = asyncio.create_task(sender(), name="bench-sender")
        try:
            async with asyncio.timeout(timeout):
                while len(seen) < per_session:
                    event = orjson.loads(await ws.recv())
                    got = _seq(event, "t")
                    if got is None:
                        tally.other(event)
                        continue
                    if got in seen:
                        tally.duplicated += 1
                        continue
                    if got < highest:
                        tally.reordered += 1
                    highest = max(highest, got)
                    seen.add(got)
                    credit.release()
        except (TimeoutError, websockets.ConnectionClosed) as exc:
            tally.ended(exc)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        tally.received += len(seen)
        tally.lost += per_session - len(seen)
        received_at.append(time.perf_counter())

    started = time.perf_counter()
    await asyncio.gather(*(stream(ws) for ws in sockets))
    elapsed = max(received_at) - started
    return tally.received / elapsed, tally


async def idle_memory(target: Target, sessions: int) -> float:
    """KiB of server RSS per idle session: open N sessions on a fresh process, RSS minus baseline."""
    warm = await sessions_open(target, 2)  # lazy imports and first-connection set-up are not per session
    await sessions_close(warm)
    baseline = target.server.rss_kib()
    sockets = await sessions_open(target, sessions)
    loaded = target.server.rss_kib()
    await sessions_close(sockets)
    return (loaded - baseline) / sessions


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


async def measure_level(target: Target, sessions: int, args) -> dict:
    per_session_latency = max(5, args.latency_events // sessions)
    per_session_throughput = max(20, args.throughput_events // sessions)
    sockets = await sessions_open(target, sessions)
    try:
        rtts, lat_tally = await latency_phase(sockets, per_session_latency, args.phase_timeout)
        cpu_before = target.server.cpu_seconds() if target.server is not None else None
        rate, tp_tally = await throughput_phase(sockets, per_session_throughput, args.window, args.phase_timeout)
        cpu_after = target.server.cpu_seconds() if target.server is not None else None
    finally:
        await sessions_close(sockets)
    return {
        "p50_ms": percentile(rtts, 0.50) * 1000 if rtts else None,
        "p95_ms": percentile(rtts, 0.95) * 1000 if rtts else None,
        "events_per_s": rate,
        "relay_cpu_us_per_event": ((cpu_after - cpu_before) / tp_tally.received * 1e6
                                   if cpu_before is not None and tp_tally.received else None),
        "lost": lat_tally.lost + tp_tally.lost,
        "duplicated": lat_tally.duplicated + tp_tally.duplicated,
        "reordered": lat_tally.reordered + tp_tally.reordered,
        "sent": lat_tally.sent + tp_tally.sent,
        "errors": (lat_tally.errors + tp_tally.errors)[:5],
    }


# --- JSON micro-benchmark -------------------------------------------------------------------------

SAMPLE_EVENTS = {
    "input_audio_buffer.append (100 ms)": {"type": "input_audio_buffer.append", "event_id": "evt_1", "audio": AUDIO_B64},
    "response.output_text.delta": {"type": "response.output_text.delta", "event_id": "evt_2", "response_id": "resp_1",
                                   "item_id": "item_1", "output_index": 0, "content_index": 0, "delta": "Hello"},
    "response.done (with usage)": {
        "type": "response.done", "event_id": "evt_3",
        "response": {"id": "resp_1", "object": "realtime.response", "status": "completed",
                     "output": [{"id": "item_1", "type": "message", "role": "assistant",
                                 "content": [{"type": "output_text", "text": "Hello there, how can I help?"}]}],
                     "usage": {"total_tokens": 57, "input_tokens": 20, "output_tokens": 37,
                               "input_token_details": {"text_tokens": 20, "audio_tokens": 0},
                               "output_token_details": {"text_tokens": 37, "audio_tokens": 0}}}},
}


def json_microbench(repeat: int = 7) -> list[dict]:
    """Parse + serialize of typical events, per event, median of ``repeat`` timings (µs per op)."""
    rows = []
    for name, event in SAMPLE_EVENTS.items():
        text = json.dumps(event)
        number = 2000 if len(text) > 1000 else 20000
        candidates = {
            "json parse": lambda: json.loads(text),
            "orjson parse": lambda: orjson.loads(text),
            "json parse+serialize": lambda: json.dumps(json.loads(text)),
            "orjson parse+serialize": lambda: orjson.dumps(orjson.loads(text)).decode(),
        }
        timings = {label: statistics.median(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6
                   for label, fn in candidates.items()}
        rows.append({"event": name, "bytes": len(text), **{k: round(v, 2) for k, v in timings.items()}})
    return rows


# --- Orchestration --------------------------------------------------------------------------------

# Servers measured but not chosen, with the versions measured.
NOT_REQUIRED = {"granian": "granian==2.8.7", "hypercorn": "hypercorn==0.18.0"}


def server_commands(py: str, app: str = "project.asgi:application") -> dict[str, list[str]]:
    """How each ASGI server is started, serving ``app``: one process (granian and hypercorn: one worker),
    loopback, access logs off. ``uvicorn`` is the production command of README.md ("Running several
    processes")."""
    uvicorn = [py, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "{port}",
               "--loop", "uvloop", "--http", "httptools", "--lifespan", "off", "--no-access-log",
               "--log-level", "warning"]
    bin_dir = Path(py).parent
    return {
        "daphne": [py, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", app],
        "uvicorn": [*uvicorn, "--ws", "realtime.lib.frames:ServerWebSocketProtocol", "--ws-per-message-deflate", "false"],
        "uvicorn-websockets": [*uvicorn, "--ws", "websockets", "--ws-per-message-deflate", "false"],
        "uvicorn-wsproto": [*uvicorn, "--ws", "wsproto", "--ws-per-message-deflate", "false"],
        # NOT_REQUIRED: measured, not chosen.
        "granian": [str(bin_dir / "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", "{port}",
                    "--loop", "uvloop", "--workers", "1", "--no-log", app],
        "hypercorn": [str(bin_dir / "hypercorn"), "-b", "127.0.0.1:{port}", "-k", "uvloop", "-w", "1",
                      app],
    }


def start_run(args, raw_key: str, agent_pk: int, logs: Path, servers_wanted: list[str]) -> tuple[list[Server], list[Target]]:
    py = sys.executable
    servers: list[Server] = []
    port = free_port()
    echo = start_server("echo", [py, "bench/echo_upstream.py", "--port", str(port)], os.environ.copy(), logs, port)
    servers.append(echo)
    echo_url = f"ws://127.0.0.1:{echo.port}/"
    targets = [Target("direct", echo_url, {}, None)]
    try:
        port = free_port()
        minimal = start_server("minimal", [py, "bench/minimal_relay.py", "--port", str(port), "--upstream", echo_url],
                               os.environ.copy(), logs, port)
        servers.append(minimal)
        targets.append(Target("minimal", f"ws://127.0.0.1:{minimal.port}/", {}, minimal))
        if servers_wanted:
            point_agent_at(agent_pk, echo_url)
        env = django_env(args.database_url, args.redis_url or None)
        commands = server_commands(py)
        headers = {"Authorization": f"Bearer {raw_key}"}
        for name in servers_wanted:
            port = free_port()
            gateway = start_server(f"gateway-{name}", [part.replace("{port}", str(port)) for part in commands[name]],
                                   env, logs, port)
            servers.append(gateway)
            targets.append(Target(f"gateway-{name}", f"ws://127.0.0.1:{gateway.port}/v1/realtime", headers, gateway))
    except Exception:
        for server in servers:
            server.stop()
        raise
    return servers, targets


async def one_run(targets: list[Target], args, run_number: int) -> dict:
    result: dict = {"memory_kib_per_session": {}, "levels": {}}
    # Memory first, while every relay process is fresh.
    for target in targets:
        if target.server is not None:
            result["memory_kib_per_session"][target.name] = await idle_memory(target, args.idle_sessions)
    for level in args.sessions:
        result["levels"][str(level)] = {}
        for target in (targets if run_number % 2 else targets[::-1]):
            result["levels"][str(level)][target.name] = await measure_level(target, level, args)
    return result


def median_of(runs: list[dict], getter) -> float | None:
    values = [v for v in (getter(run) for run in runs) if v is not None]
    return statistics.median(values) if values else None


def summarize(runs: list[dict], args) -> dict:
    names = list(runs[0]["levels"][str(args.sessions[0])].keys())
    gateways = [n for n in names if n.startswith("gateway")]
    summary: dict = {"levels": {}, "memory_kib_per_session": {}}
    for name in runs[0]["memory_kib_per_session"]:
        summary["memory_kib_per_session"][name] = median_of(runs, lambda r: r["memory_kib_per_session"][name])
    for level in map(str, args.sessions):
        rows = {}
        for name in names:
            def cell(run, key, name=name):
                return run["levels"][level][name][key]

            row = {key: median_of(runs, lambda r, key=key: cell(r, key))
                   for key in ("p50_ms", "p95_ms", "events_per_s", "relay_cpu_us_per_event")}
            for key in ("lost", "duplicated", "reordered", "sent"):
                row[key] = sum(cell(run, key) for run in runs)
            row["errors"] = [e for run in runs for e in cell(run, "errors")][:3]
            # Within-run ratios against the minimal relay, then their median.
            row["throughput_vs_minimal"] = median_of(runs, lambda r: cell(r, "events_per_s") / r["levels"][level]["minimal"]["events_per_s"])
            row["added_p50_ms_vs_direct"] = median_of(runs, lambda r: cell(r, "p50_ms") - r["levels"][level]["direct"]["p50_ms"])
            row["added_p50_ms_vs_minimal"] = median_of(runs, lambda r: cell(r, "p50_ms") - r["levels"][level]["minimal"]["p50_ms"])
            rows[name] = row
        summary["levels"][level] = rows
    summary["goals"] = goals(summary, gateways)
    return summary


def goals(summary: dict, gateways: list[str]) -> dict:
    out = {}
    for name in gateways:
        levels = summary["levels"]
        integrity = all(levels[lv][name][k] == 0 for lv in levels for k in ("lost", "duplicated", "reordered"))
        out[name] = {
            "throughput at 50 sessions >= 0.9x minimal relay":
                _fmt_goal(levels.get("50", {}).get(name, {}).get("throughput_vs_minimal"), lambda v: v >= 0.9, "{:.2f}x"),
            "added p50 latency at 1 session < 0.5 ms":
                _fmt_goal(levels.get("1", {}).get(name, {}).get("added_p50_ms_vs_direct"), lambda v: v < 0.5, "{:.3f} ms"),
            "memory per idle session < 60 KiB":
                _fmt_goal(summary["memory_kib_per_session"].get(name), lambda v: v < 60, "{:.1f} KiB"),
            "zero frames lost, duplicated or reordered": ("met" if integrity else "MISSED"),
        }
    return out


def _fmt_goal(value, ok, fmt) -> str:
    if value is None:
        return "not measured"
    return f"{fmt.format(value)}: {'met' if ok(value) else 'MISSED'}"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        cpu = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M).group(1).strip()
    except (OSError, AttributeError):
        pass
    memory = ""
    try:
        kib = int(re.search(r"^MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text(), re.M).group(1))
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, AttributeError):
        pass
    return (f"{cpu}, {os.cpu_count()} cores{memory}; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}; websockets {websockets.version.version}")


def render(summary: dict, micro: list[dict], meta: dict) -> str:
    def num(v, fmt="{:.2f}"):
        return "—" if v is None else fmt.format(v)

    out = [SECTION_BEGIN, "## Relay (`bench/relay.py`)", ""]
    out.append(f"Measured {meta['date']} on {meta['machine']}. Median of {meta['runs']} runs; ratios are taken "
               "within each run, then their median. Client, upstream and relays share the machine's cores; "
               f"the 1-minute load average was {meta['load_before']:.1f} before and {meta['load_after']:.1f} after "
               "(other work on the machine shows up as noise, most at 50 and 100 sessions).")
    out.append("")
    out.append(f"Run: `make bench` (all benches) or `.venv/bin/python bench/relay.py` (this one; `--help` for options). "
               f"Needs PostgreSQL and Redis on loopback (`make services`); about {meta['minutes']:.0f} minutes. "
               f"These figures: `{('bench/relay.py ' + meta['arguments']).strip()}`.")
    extra = sorted(set(meta["servers"]) & set(NOT_REQUIRED))
    if extra:
        out.append("")
        out.append(f"{', '.join(extra)}: measured to choose the server, not in requirements.txt; installed beside it "
                   f"for this run ({', '.join(NOT_REQUIRED[name] for name in extra)}).")
    out.append("")
    out.append("Each event is one 100 ms PCM16 24 kHz append (4,800 bytes, "
               f"{len(frame('t', 0))} bytes of JSON), echoed back by `bench/echo_upstream.py`. "
               "*direct*: client to the echo upstream; *minimal*: `bench/minimal_relay.py` (websockets, no parsing); "
               "*gateway-daphne* / *gateway-uvicorn* (and any other `--servers`): Switchboard's `project.asgi:application` with API-key auth, "
               "a custom agent, metering and limits, one process of that ASGI server (*daphne*: as `make run` "
               "serves; *uvicorn*: the production command of README.md, uvloop + httptools + websockets-sansio). "
               "Latency: closed loop, one append in flight per session. "
               f"Throughput: {meta['window']} appends in flight per session, round trips per second. "
               "Relay CPU: CPU time of the relay process per relayed round trip during the throughput phase. "
               "Lost / dup / reord: sequence numbers checked over every append of every run.")
    out.append("")
    out.append("| sessions | target | p50 ms | p95 ms | added p50 vs direct ms | events/s | × minimal | "
               "relay CPU µs/event | lost | dup | reord |")
    out.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for level, rows in summary["levels"].items():
        for name, row in rows.items():
            out.append(f"| {level} | {name} | {num(row['p50_ms'], '{:.3f}')} | {num(row['p95_ms'], '{:.3f}')} | "
                       f"{num(row['added_p50_ms_vs_direct'], '{:+.3f}')} | {num(row['events_per_s'], '{:,.0f}')} | "
                       f"{num(row['throughput_vs_minimal'])} | {num(row.get('relay_cpu_us_per_event'), '{:.1f}')} | "
                       f"{row['lost']} | {row['duplicated']} | {row['reordered']} |")
    out.append("")
    out.append(f"Memory per idle session ({meta['idle_sessions']} idle sessions on a fresh process, RSS minus baseline):")
    out.append("")
    out.append("| relay process | KiB per idle session |")
    out.append("|---|---:|")
    for name, value in summary["memory_kib_per_session"].items():
        out.append(f"| {name} | {num(value, '{:.1f}')} |")
    out.append("")
    if summary["goals"]:
        columns = list(next(iter(summary["goals"].values())).keys())
        out += ["Goals (issue 4):", "", "| gateway | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
        for name, row in summary["goals"].items():
            out.append(f"| {name} | " + " | ".join(row.values()) + " |")
        out.append("")
    out.append("JSON on the relay hot path (µs per event, median of 7 timings):")
    out.append("")
    out.append("| event | bytes | json parse | orjson parse | json parse+serialize | orjson parse+serialize | orjson speed-up (parse+serialize) |")
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    for row in micro:
        out.append(f"| {row['event']} | {row['bytes']:,} | {row['json parse']} | {row['orjson parse']} | "
                   f"{row['json parse+serialize']} | {row['orjson parse+serialize']} | "
                   f"{row['json parse+serialize'] / row['orjson parse+serialize']:.1f}× |")
    out.append("")
    out.append(SECTION_END)
    return "\n".join(out)


def write_readme(section: str) -> None:
    readme_section_write(name="relay", section=section)


# --- Scale (--scale, issue 14: flat cost as sessions grow) ------------------------------------------

SCALE_RESULTS = BENCH_DIR / "results" / "relay_scale.json"
SCALE_BEGIN = "<!-- relay-scale:begin (written by bench/relay.py --scale; edit the script, not this section) -->"
SCALE_END = "<!-- relay-scale:end -->"
# The ledger's metrics the realtime dialect can bill; the echo upstream sends no output audio, no
# response.done and no messages, so all but audio in (0.1 s per append) must stay at zero.
LEDGER_METRICS = ("audio_in_seconds", "audio_out_seconds", "text_in_tokens", "text_out_tokens", "messages")


def _threads_cpu_ns(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(task.read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue
    return total


def services_snapshot(database: str) -> dict[int, tuple[str, bool, int]]:
    """pid -> (service, is a backend of the bench database, CPU ns so far) of every PostgreSQL process
    (``postgres`` in /proc/<pid>/comm) and every ``redis-server``. The machine's PostgreSQL and Redis
    also serve other people's tests: the bench database's own backends are the part that is ours alone."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            if comm not in ("postgres", "redis-server"):
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        pid = int(entry.name)
        service = "postgres" if comm == "postgres" else "redis"
        found[pid] = (service, f" {database} " in cmdline, _threads_cpu_ns(pid))
    return found


def services_cpu(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds between two snapshots: postgres (all processes), postgres_bench (the bench database's
    backends), redis. A process that started in between counts from zero; one that ended is lost."""
    out = {"postgres": 0.0, "postgres_bench": 0.0, "redis": 0.0}
    for pid, (service, bench, ns) in after.items():
        prior = before.get(pid)
        delta = (ns - prior[2]) / 1e9 if prior and prior[0] == service else ns / 1e9
        out[service] += delta
        if bench:
            out["postgres_bench"] += delta
    return out


@dataclass
class Meter:
    """CPU of the relay process and of PostgreSQL and Redis over one phase, and its wall time."""
    server: Server
    database: str
    started: float = 0.0
    relay: float = 0.0
    services: dict = field(default_factory=dict)

    def __enter__(self):
        self._services = services_snapshot(self.database)
        self._relay = self.server.cpu_seconds()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.started
        self.relay = self.server.cpu_seconds() - self._relay
        self.services = services_cpu(self._services, services_snapshot(self.database))
        return False


async def quiesce(server: Server, *, cores: float = 0.2, window: float = 0.5, timeout: float = 15.0) -> None:
    """Wait until the relay process spends less than ``cores`` over ``window``: what opening or closing
    sessions leaves behind (usage and session records written, handshake tails) stays out of the
    next phase's figures."""
    deadline = time.monotonic() + timeout
    last = server.cpu_seconds()
    while time.monotonic() < deadline:
        await asyncio.sleep(window)
        now = server.cpu_seconds()
        if (now - last) / window < cores:
            return
        last = now


async def storm(target: Target, sessions: int, concurrency: int, database: str) -> dict:
    """Open ``sessions`` at once, ``concurrency`` handshakes in progress at a time; each one's time from
    the start of its connect to the relayed ``session.created`` (the echo upstream sends it on connect),
    and the relay process's CPU over the whole storm (until one second after the last one, for any
    work the opens leave behind)."""
    gate = asyncio.Semaphore(concurrency)
    times: list[float] = []

    async def one() -> ClientConnection:
        async with gate:
            started = time.perf_counter()
            ws = await connect(target.url, additional_headers=target.headers, compression=None,
                               max_size=16 * 1024 * 1024, ping_interval=None, open_timeout=60)
            target.opened_at[ws] = started
            async with asyncio.timeout(60):
                while True:
                    event = orjson.loads(await ws.recv())
                    if event.get("type") == "session.created":
                        break
                    if event.get("type") == "error":
                        raise RuntimeError(f"{target.name}: error while opening a session: {event.get('error')}")
            times.append(time.perf_counter() - started)
            return ws

    with Meter(target.server, database) as meter:
        sockets = list(await asyncio.gather(*(one() for _ in range(sessions))))
        await asyncio.sleep(1.0)
    await sessions_close(sockets, target)
    await quiesce(target.server)
    return {
        "sessions": sessions,
        "relay_cpu_ms_per_open": meter.relay / sessions * 1e3,
        "services_cpu_ms_per_open": (meter.services["postgres"] + meter.services["redis"]) / sessions * 1e3,
        "postgres_bench_cpu_ms_per_open": meter.services["postgres_bench"] / sessions * 1e3,
        "p50_ms": percentile(times, 0.50) * 1e3,
        "p99_ms": percentile(times, 0.99) * 1e3,
        "max_ms": max(times) * 1e3,
    }


async def idle_cpu(target: Target, sessions: int, seconds: float, concurrency: int, database: str) -> dict:
    """On a fresh process: RSS per session of ``sessions`` idle sessions (opened ``concurrency`` at a
    time, each relayed one append), then the CPU the relay, PostgreSQL and Redis spend while they sit
    idle for ``seconds``, in cores (CPU seconds per wall second)."""
    warm = await sessions_open(target, 2)  # lazy imports and first-connection set-up are not per session
    await sessions_close(warm, target)
    baseline = target.server.rss_kib()
    sockets = await sessions_open(target, sessions, concurrency)
    try:
        loaded = target.server.rss_kib()
        await quiesce(target.server)
        with Meter(target.server, database) as meter:
            await asyncio.sleep(seconds)
    finally:
        await sessions_close(sockets, target)
        await quiesce(target.server)
    services = meter.services
    return {
        "sessions": sessions,
        "seconds": meter.wall,
        "memory_kib_per_session": (loaded - baseline) / sessions,
        "relay_cores": meter.relay / meter.wall,
        "postgres_cores": services["postgres"] / meter.wall,
        "postgres_bench_cores": services["postgres_bench"] / meter.wall,
        "redis_cores": services["redis"] / meter.wall,
        "services_cores": (services["postgres"] + services["redis"]) / meter.wall,
    }


async def pingpong(targets: list[Target], levels: list[int], events: int, rounds: int, concurrency: int,
                   database: str, timeout: float) -> dict[str, dict]:
    """For each level, on sessions opened ``concurrency`` at a time on every target (the next level adds
    to the last's): one append in flight per session, ``events`` round trips per target (at least 20 per
    session), in ``rounds`` turns. The targets take turns, the order flipping every round, so a drift
    of the shared machine over the level (other people's load, a client growing busier) falls on each
    alike; CPU of the relay, PostgreSQL and Redis per round trip, summed over a target's turns."""
    sockets: dict[str, list[ClientConnection]] = {target.name: [] for target in targets}
    out: dict[str, dict] = {target.name: {} for target in targets}
    try:
        for level in levels:
            for target in targets:
                sockets[target.name] += await sessions_open(target, level - len(sockets[target.name]), concurrency)
            per_turn = -(-max(20, events // level) // rounds)
            totals = {target.name: {"rtts": [], "tally": Tally(), "wall": 0.0, "relay": 0.0,
                                    "services": collections.Counter()} for target in targets}
            for turn in range(rounds):
                for target in (targets if turn % 2 == 0 else targets[::-1]):
                    await quiesce(target.server)
                    with Meter(target.server, database) as meter:
                        rtts, tally = await latency_phase(sockets[target.name], per_turn, timeout)
                    total = totals[target.name]
                    total["rtts"] += rtts
                    total["tally"].add(tally)
                    total["wall"] += meter.wall
                    total["relay"] += meter.relay
                    total["services"].update(meter.services)
            for target in targets:
                total = totals[target.name]
                tally, rtts = total["tally"], total["rtts"]
                target.appends += tally.sent
                done = max(tally.received, 1)
                out[target.name][str(level)] = {
                    "round_trips": tally.received,
                    "p50_ms": percentile(rtts, 0.50) * 1e3 if rtts else None,
                    "p99_ms": percentile(rtts, 0.99) * 1e3 if rtts else None,
                    "round_trips_per_s": tally.received / total["wall"],
                    "relay_cpu_us_per_rt": total["relay"] / done * 1e6,
                    "postgres_cpu_us_per_rt": total["services"]["postgres"] / done * 1e6,
                    "postgres_bench_cpu_us_per_rt": total["services"]["postgres_bench"] / done * 1e6,
                    "redis_cpu_us_per_rt": total["services"]["redis"] / done * 1e6,
                    "lost": tally.lost, "duplicated": tally.duplicated, "reordered": tally.reordered,
                    "errors": tally.errors,
                }
    finally:
        for target in targets:
            await sessions_close(sockets[target.name], target)
    return out


def ledger_totals() -> dict[str, object]:
    """The bench database's ledger, summed per metric (Decimal)."""
    from django.db import connection
    from django.db.models import Sum

    from accounts.models import UsageRecord

    totals = {row["metric"]: row["total"] for row in UsageRecord.objects.values("metric").annotate(total=Sum("quantity"))}
    connection.close()  # no idle backend of ours in the next phase's PostgreSQL figures
    return totals


def ledger_check(before: dict, appends: int, connected_seconds: float, timeout: float) -> dict:
    """Wait until the usage written since ``before`` settles (audio in equal to what was sent and
    unchanged for a second, or ``timeout``), then compare each metric with what was sent."""
    from decimal import Decimal

    expected = {metric: Decimal(0) for metric in LEDGER_METRICS}
    expected["audio_in_seconds"] = Decimal(appends) * Decimal(CHUNK_BYTES) / Decimal(48_000)
    deadline = time.monotonic() + timeout
    previous = None
    while True:
        after = ledger_totals()
        billed = {m: Decimal(after.get(m) or 0) - Decimal(before.get(m) or 0) for m in set(after) | set(LEDGER_METRICS)}
        settled = billed == previous and billed.get("audio_in_seconds") == expected["audio_in_seconds"]
        if settled or time.monotonic() > deadline:
            break
        previous = billed
        time.sleep(1.0)  # polling another process's database writes
    rows = {m: {"sent": str(expected.get(m, "")), "billed": str(billed.get(m, 0)),
                "exact": billed.get(m, Decimal(0)) == expected[m]} for m in LEDGER_METRICS}
    for metric in sorted(set(billed) - set(LEDGER_METRICS) - {"session_seconds"}):
        rows[metric] = {"sent": "0", "billed": str(billed[metric]), "exact": billed[metric] == 0}
    # Session time has no exact expectation: the client's view is connect to close, the gateway's from
    # the upstream's acceptance to its own close; shown, not checked.
    rows["session_seconds"] = {"sent": f"{connected_seconds:.3f} (client-observed)",
                               "billed": str(billed.get("session_seconds", 0)), "exact": None}
    return {"appends": appends, "metrics": rows, "exact": all(r["exact"] for r in rows.values() if r["exact"] is not None),
            "settle_seconds": round(timeout - max(0.0, deadline - time.monotonic()), 1)}


def log_errors(server: Server) -> dict:
    """ERROR and CRITICAL lines a relay process logged (its log is rewritten on every start), counted
    by message with the session ids taken out: a phase may pass while the gateway logged failures."""
    found: dict[str, int] = {}
    for line in server.log_path.read_text(errors="replace").splitlines():
        match = re.search(r" (?:ERROR|CRITICAL) (.*)", line)
        if match:
            message = re.sub(r"sess_[0-9a-f]+", "sess_…", match.group(1))[:160]
            found[message] = found.get(message, 0) + 1
    return found


# The server floor (bench/asgi_relay_floor.py): a bare ASGI relay under the gateway's production command.
FLOOR = "floor-uvicorn"


def start_relay(name: str, args, echo_url: str, logs: Path, raw_key: str) -> Target:
    py = sys.executable
    port = free_port()
    if name == "minimal":
        server = start_server("minimal", [py, "bench/minimal_relay.py", "--port", str(port), "--upstream", echo_url],
                              os.environ.copy(), logs, port)
        return Target("minimal", f"ws://127.0.0.1:{port}/", {}, server)
    if name == FLOOR:
        command = [part.replace("{port}", str(port))
                   for part in server_commands(py, app="bench.asgi_relay_floor:application")["uvicorn"]]
        server = start_server(FLOOR, command, {**os.environ, "BENCH_FLOOR_UPSTREAM": echo_url}, logs, port)
        return Target(FLOOR, f"ws://127.0.0.1:{port}/", {}, server)
    env = django_env(args.database_url, args.redis_url or None)
    env["BILLING_SPOOL_DIR"] = str(logs / "usage-spool")  # this bench's own: no other run's spool adopted
    command = [part.replace("{port}", str(port)) for part in server_commands(py)[name]]
    server = start_server(f"gateway-{name}", command, env, logs, port)
    return Target(f"gateway-{name}", f"ws://127.0.0.1:{port}/v1/realtime", {"Authorization": f"Bearer {raw_key}"},
                  server)


def scale_run(args, raw_key: str, agent_pk: int, logs: Path, run_number: int) -> dict:
    """One run of every scale measure, the targets taking turns (the order flips every other run):
    the connect storm on fresh processes; then, on another fresh process per target, idle memory and
    CPU, then ping-pong; then the ledger check of every gateway session of the run."""
    database = args.database_url.rsplit("/", 1)[-1]
    names = ["minimal", *([FLOOR] if args.floor else []), *args.servers]
    names = names if run_number % 2 else names[::-1]
    before = ledger_totals()
    port = free_port()
    echo = start_server("echo", [sys.executable, "bench/echo_upstream.py", "--port", str(port)],
                        os.environ.copy(), logs, port)
    echo_url = f"ws://127.0.0.1:{port}/"
    point_agent_at(agent_pk, echo_url)
    result: dict = {"storm": {}, "storm_warm": {}, "idle": {}, "pingpong": {}, "log_errors": {}}
    appends, connected = 0, 0.0
    live: list[Target] = []
    try:
        for name in names:
            target = start_relay(name, args, echo_url, logs, raw_key)
            try:
                print(f"  storm: {target.name}", flush=True)
                result["storm"][target.name] = asyncio.run(storm(target, args.storm_sessions, args.storm_concurrency, database))
                # The same storm again on the now warm process: what is per open, not first use.
                result["storm_warm"][target.name] = asyncio.run(storm(target, args.storm_sessions, args.storm_concurrency, database))
            finally:
                target.server.stop()  # a gateway's drain writes what its sessions still had counted
                result["log_errors"]["storm " + target.name] = log_errors(target.server)
            if target.name.startswith("gateway"):
                connected += target.connected_seconds
        for name in names:
            target = start_relay(name, args, echo_url, logs, raw_key)
            live.append(target)
            print(f"  idle ({args.idle_cpu_sessions} sessions, {args.idle_cpu_seconds:g} s): {target.name}",
                  flush=True)
            result["idle"][target.name] = asyncio.run(idle_cpu(target, args.idle_cpu_sessions, args.idle_cpu_seconds,
                                                               args.storm_concurrency, database))
        print(f"  ping-pong: {', '.join(target.name for target in live)} taking turns", flush=True)
        result["pingpong"] = asyncio.run(pingpong(live, args.pingpong_sessions, args.pingpong_events,
                                                  args.pingpong_rounds, args.storm_concurrency, database,
                                                  args.phase_timeout))
        for target in live:
            if target.name.startswith("gateway"):
                appends += target.appends
                connected += target.connected_seconds
        if args.servers:
            result["ledger"] = ledger_check(before, appends, connected, args.ledger_timeout)
    finally:
        for target in live:
            target.server.stop()
            result["log_errors"][target.name] = log_errors(target.server)
        echo.stop()
    return result


def scale_summarize(runs: list[dict], args) -> dict:
    names = list(runs[0]["idle"])
    names = ["minimal", *sorted(n for n in names if n != "minimal")]
    gateways = [n for n in names if n.startswith("gateway")]
    summary: dict = {"pingpong": {}, "idle": {}, "storm": {}, "storm_warm": {}}
    for level in map(str, args.pingpong_sessions):
        rows = {}
        for name in names:
            def cell(run, key, name=name, level=level):
                return run["pingpong"][name][level][key]

            row = {key: median_of(runs, lambda r, key=key: cell(r, key))
                   for key in ("p50_ms", "p99_ms", "round_trips_per_s", "relay_cpu_us_per_rt", "postgres_cpu_us_per_rt",
                               "postgres_bench_cpu_us_per_rt", "redis_cpu_us_per_rt")}
            for key in ("round_trips", "lost", "duplicated", "reordered"):
                row[key] = sum(cell(run, key) for run in runs)
            row["errors"] = [e for run in runs for e in cell(run, "errors")][:3]
            row["relay_cpu_vs_minimal"] = median_of(
                runs, lambda r: cell(r, "relay_cpu_us_per_rt") / r["pingpong"]["minimal"][level]["relay_cpu_us_per_rt"])
            row["relay_cpu_vs_floor"] = median_of(
                runs, lambda r: cell(r, "relay_cpu_us_per_rt") / r["pingpong"][FLOOR][level]["relay_cpu_us_per_rt"]
            ) if FLOOR in runs[0]["pingpong"] else None
            row["services_cpu_us_per_rt_vs_minimal"] = median_of(
                runs, lambda r: (cell(r, "postgres_cpu_us_per_rt") + cell(r, "redis_cpu_us_per_rt"))
                - (r["pingpong"]["minimal"][level]["postgres_cpu_us_per_rt"]
                   + r["pingpong"]["minimal"][level]["redis_cpu_us_per_rt"]))
            rows[name] = row
        summary["pingpong"][level] = rows
    for name in names:
        idle = {key: median_of(runs, lambda r, key=key: r["idle"][name][key])
                for key in runs[0]["idle"][name] if key != "sessions"}
        # The machine's PostgreSQL and Redis serve other work too: the minimal relay's window of the same
        # run (no database, no Redis) is the background to take away.
        idle["services_cores_over_minimal"] = median_of(
            runs, lambda r: r["idle"][name]["services_cores"] - r["idle"]["minimal"]["services_cores"])
        if FLOOR in runs[0]["idle"]:
            idle["memory_kib_over_floor"] = median_of(
                runs, lambda r: r["idle"][name]["memory_kib_per_session"] - r["idle"][FLOOR]["memory_kib_per_session"])
        idle["relay_cores_over_minimal"] = median_of(
            runs, lambda r: r["idle"][name]["relay_cores"] - r["idle"]["minimal"]["relay_cores"])
        summary["idle"][name] = idle
        for phase in ("storm", "storm_warm"):
            storm_row = {key: median_of(runs, lambda r, key=key, phase=phase: r[phase][name][key])
                         for key in runs[0][phase][name] if key != "sessions"}
            storm_row["p99_vs_minimal"] = median_of(runs, lambda r, phase=phase: r[phase][name]["p99_ms"] / r[phase]["minimal"]["p99_ms"])
            storm_row["cpu_vs_minimal"] = median_of(
                runs, lambda r, phase=phase: r[phase][name]["relay_cpu_ms_per_open"] / r[phase]["minimal"]["relay_cpu_ms_per_open"])
            summary[phase][name] = storm_row
    errors: dict[str, int] = {}
    for run in runs:
        for process, found in run["log_errors"].items():
            for message, count in found.items():
                key = f"{process.removeprefix('storm ')}: {message}"
                errors[key] = errors.get(key, 0) + count
    summary["log_errors"] = errors
    ledgers = [run["ledger"] for run in runs if "ledger" in run]
    summary["ledger"] = {"exact": all(lg["exact"] for lg in ledgers), "runs": ledgers} if ledgers else None
    summary["goals"] = scale_goals(summary, gateways, args)
    return summary


def scale_goals(summary: dict, gateways: list[str], args) -> dict:
    out = {}
    low, high = str(min(args.pingpong_sessions)), str(max(args.pingpong_sessions))
    for name in gateways:
        idle, storm_row, fresh_row = summary["idle"][name], summary["storm_warm"][name], summary["storm"][name]
        ledger = summary["ledger"]
        out[name] = {
            f"relay CPU per round trip ≤ 1.1× minimal at {low} ping-pong sessions":
                _fmt_goal(summary["pingpong"][low][name]["relay_cpu_vs_minimal"], lambda v: v <= 1.1, "{:.2f}×"),
            f"relay CPU per round trip ≤ 1.1× minimal at {high} ping-pong sessions":
                _fmt_goal(summary["pingpong"][high][name]["relay_cpu_vs_minimal"], lambda v: v <= 1.1, "{:.2f}×"),
            f"{args.idle_cpu_sessions} idle sessions ≤ 0.01 core in the gateway":
                _fmt_goal(idle["relay_cores"], lambda v: v <= 0.01, "{:.4f} cores"),
            f"{args.idle_cpu_sessions} idle sessions ≤ 0.01 core in PostgreSQL + Redis (over the minimal relay's window)":
                _fmt_goal(idle["services_cores_over_minimal"], lambda v: v <= 0.01, "{:.4f} cores"),
            # Per open: the warm storm, as the idle measure opens two sessions first. A fresh process's
            # first storm also pays its one-time set-up (lazy imports, first connections), shown beside.
            "CPU per session open ≤ 2 ms (warm storm; fresh process in brackets)":
                _fmt_goal(storm_row["relay_cpu_ms_per_open"], lambda v: v <= 2,
                          "{:.2f} ms" + (f" ({fresh_row['relay_cpu_ms_per_open']:.2f} ms)"
                                         if fresh_row.get("relay_cpu_ms_per_open") is not None else "")),
            "connect storm p99 to session.created ≤ 4× minimal (warm storm; fresh process in brackets)":
                _fmt_goal(storm_row["p99_vs_minimal"], lambda v: v <= 4,
                          "{:.2f}×" + (f" ({fresh_row['p99_vs_minimal']:.2f}×)"
                                       if fresh_row.get("p99_vs_minimal") is not None else "")),
            f"memory per idle session ≤ 50 KiB (at {args.idle_cpu_sessions})":
                _fmt_goal(idle["memory_kib_per_session"], lambda v: v <= 50, "{:.1f} KiB"),
            "ledger exact": ("not measured" if ledger is None else "met" if ledger["exact"] else "MISSED"),
        }
    return out


def scale_render(summary: dict, meta: dict) -> str:
    def num(v, fmt="{:.2f}"):
        return "—" if v is None else fmt.format(v)

    out = [SCALE_BEGIN, "## Relay at scale (`bench/relay.py --scale`)", ""]
    out.append(f"Measured {meta['date']} on {meta['machine']}. Median of {meta['runs']} runs; ratios and differences "
               "against the minimal relay are taken within each run, then their median. The machine is shared: "
               f"the 1-minute load average was {meta['load_before']:.1f} before and {meta['load_after']:.1f} after, and "
               "its PostgreSQL and Redis also serve other people's tests, so the minimal relay's figures for them "
               "(it uses neither) are the background of that run.")
    out.append("")
    out.append(f"Run: `.venv/bin/python bench/relay.py --scale` (`--scale --quick` for a one-minute smoke test). "
               f"About {meta['minutes']:.0f} minutes. These figures: `{('bench/relay.py ' + meta['arguments']).strip()}`.")
    out.append("")
    out.append("Targets as in the relay section (*minimal*: `bench/minimal_relay.py`; *gateway-uvicorn*: the production "
               "command; *floor-uvicorn*: `bench/asgi_relay_floor.py`, a bare ASGI relay under the same uvicorn command, "
               "its upstream client configured as the gateway's, so *× floor* is what Switchboard's own code costs and the "
               "floor's *× minimal* what uvicorn's ASGI layer costs), the gateway with its production intervals (usage written every REALTIME_METER_FLUSH_SECONDS, "
               "5 s; uvicorn's WebSocket pings every 20 s). CPU is schedstat time of all threads: of the relay process, "
               "of every `postgres` process (*PG*; *PG bench*: only the backends connected to the bench database) and "
               "of `redis-server`.")
    out.append("")
    out.append(f"**Ping-pong**: one 100 ms append in flight per session, {meta['pingpong_events']:,} round trips per level "
               f"and target (at least 20 per session), in {meta.get('pingpong_rounds', 1)} turns: the targets, their sessions "
               f"all open, take turns, the order flipping every round, so that a drift of the shared machine falls on each "
               f"alike; sessions opened {meta['concurrency']} at a time, each level adding to the last.")
    out.append("")
    out.append("| sessions | target | p50 ms | p99 ms | round trips/s | relay CPU µs/rt | × minimal | × floor | PG µs/rt | "
               "PG bench µs/rt | Redis µs/rt | PG+Redis µs/rt over minimal | lost | dup | reord |")
    out.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for level, rows in summary["pingpong"].items():
        for name, row in rows.items():
            out.append(f"| {level} | {name} | {num(row['p50_ms'], '{:.3f}')} | {num(row['p99_ms'], '{:.3f}')} | "
                       f"{num(row['round_trips_per_s'], '{:,.0f}')} | {num(row['relay_cpu_us_per_rt'], '{:.1f}')} | "
                       f"{num(row['relay_cpu_vs_minimal'])} | {num(row.get('relay_cpu_vs_floor'))} | "
                       f"{num(row['postgres_cpu_us_per_rt'], '{:.1f}')} | "
                       f"{num(row['postgres_bench_cpu_us_per_rt'], '{:.1f}')} | {num(row['redis_cpu_us_per_rt'], '{:.1f}')} | "
                       f"{num(row['services_cpu_us_per_rt_vs_minimal'], '{:+.1f}')} | "
                       f"{row['lost']} | {row['duplicated']} | {row['reordered']} |")
    out.append("")
    out.append(f"**Idle**: {meta['idle_sessions']} sessions on a fresh process (opened {meta['concurrency']} at a time, "
               f"one append relayed each), then {meta['idle_seconds']:g} s with nothing sent; CPU in cores (CPU seconds "
               "per wall second). Memory: RSS with the sessions open minus the baseline, per session.")
    out.append("")
    out.append("| target | relay cores | PG cores | PG bench cores | Redis cores | PG+Redis cores | PG+Redis over minimal | "
               "KiB per idle session | KiB over floor |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in summary["idle"].items():
        out.append(f"| {name} | {num(row['relay_cores'], '{:.4f}')} | {num(row['postgres_cores'], '{:.4f}')} | "
                   f"{num(row['postgres_bench_cores'], '{:.4f}')} | {num(row['redis_cores'], '{:.4f}')} | "
                   f"{num(row['services_cores'], '{:.4f}')} | {num(row['services_cores_over_minimal'], '{:+.4f}')} | "
                   f"{num(row['memory_kib_per_session'], '{:.1f}')} | {num(row.get('memory_kib_over_floor'), '{:+.1f}')} |")
    out.append("")
    out.append(f"**Connect storm**: {meta['storm_sessions']} sessions against a freshly started process, "
               f"{meta['concurrency']} handshakes in progress at a time; time from the start of a connect to the relayed "
               "`session.created` (the echo upstream sends it on connect); relay CPU from the first connect to one second "
               "after the last `session.created`, per session. *warm*: the same storm again on the same process once "
               "the first storm's sessions are closed.")
    out.append("")
    out.append("| storm | target | relay CPU ms per open | × minimal | PG+Redis CPU ms per open | PG bench ms per open | "
               "p50 ms | p99 ms | p99 × minimal |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for phase, label in (("storm", "fresh"), ("storm_warm", "warm")):
        for name, row in summary[phase].items():
            out.append(f"| {label} | {name} | {num(row['relay_cpu_ms_per_open'], '{:.3f}')} | {num(row['cpu_vs_minimal'])} | "
                       f"{num(row['services_cpu_ms_per_open'], '{:.3f}')} | {num(row['postgres_bench_cpu_ms_per_open'], '{:.3f}')} | "
                       f"{num(row['p50_ms'], '{:.1f}')} | {num(row['p99_ms'], '{:.1f}')} | {num(row['p99_vs_minimal'])} |")
    out.append("")
    ledger = summary["ledger"]
    if ledger:
        out.append("**Ledger**: every append the gateway relayed in a run (storms, idle, ping-pong; 100 ms of PCM16 24 kHz "
                   "each) against the usage rows the run added to the bench database, once the writes settle. "
                   "Session time has no exact expectation (the client counts from its connect to its close).")
        out.append("")
        out.append("| run | metric | sent | billed | exact |")
        out.append("|---:|---|---:|---:|---|")
        for number, run in enumerate(ledger["runs"], 1):
            for metric, row in run["metrics"].items():
                exact = "—" if row["exact"] is None else "yes" if row["exact"] else "**NO**"
                out.append(f"| {number} | {metric} | {row['sent']} | {row['billed']} | {exact} |")
        out.append("")
    if summary["log_errors"]:
        out.append("Errors the relay processes logged over all runs (count, message):")
        out.append("")
        for message, count in sorted(summary["log_errors"].items(), key=lambda item: -item[1])[:8]:
            out.append(f"- {count} × `{message}`")
        out.append("")
    if summary["goals"]:
        out += ["Goals (issue 14):", "", "| goal | " + " | ".join(summary["goals"]) + " |",
                "|---|" + "---|" * len(summary["goals"])]
        for goal in next(iter(summary["goals"].values())):
            out.append(f"| {goal} | " + " | ".join(row[goal] for row in summary["goals"].values()) + " |")
        out.append("")
    out.append(SCALE_END)
    return "\n".join(out)


def scale_main(args, began: float, logs: Path, raw_key: str, agent_pk: int) -> int:
    load_before = os.getloadavg()[0]
    runs = []
    for number in range(1, args.runs + 1):
        print(f"run {number}/{args.runs}: minimal, {', '.join('gateway-' + s for s in args.servers)}", flush=True)
        runs.append(scale_run(args, raw_key, agent_pk, logs, number))
        ledger = runs[-1].get("ledger")
        if ledger and not ledger["exact"]:
            print(f"LEDGER NOT EXACT in run {number}: {json.dumps(ledger['metrics'], indent=1)}", flush=True)
    summary = scale_summarize(runs, args)
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "runs": args.runs,
        "servers": args.servers,
        "arguments": " ".join(args.argv),
        "pingpong_events": args.pingpong_events,
        "pingpong_rounds": args.pingpong_rounds,
        "idle_sessions": args.idle_cpu_sessions,
        "idle_seconds": args.idle_cpu_seconds,
        "storm_sessions": args.storm_sessions,
        "concurrency": args.storm_concurrency,
        "minutes": (time.monotonic() - began) / 60,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }
    section = scale_render(summary, meta)
    print(section)
    if not args.no_write:
        SCALE_RESULTS.parent.mkdir(parents=True, exist_ok=True)
        SCALE_RESULTS.write_text(json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=1))
        readme_section_write(name="relay-scale", section=section)
        print(f"wrote {README.relative_to(BASE_DIR)} and {SCALE_RESULTS.relative_to(BASE_DIR)}")
    if summary["ledger"] is not None and not summary["ledger"]["exact"]:
        print("FAILED: the ledger does not match what was sent (see the Ledger table)", file=sys.stderr)
        return 1
    return 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Relay benchmark (see the module docstring).")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sessions", type=lambda s: [int(x) for x in s.split(",")], default=[1, 50, 100])
    parser.add_argument("--servers", type=lambda s: s.split(","), default=None,
                        help="ASGI servers to run the gateway under (daphne, uvicorn, uvicorn-websockets, "
                             "uvicorn-wsproto, granian, hypercorn); empty: no gateway. Default: daphne,uvicorn "
                             "(--scale: uvicorn)")
    parser.add_argument("--latency-events", type=int, default=1000, help="round trips per level and target")
    parser.add_argument("--throughput-events", type=int, default=5000, help="appends per level and target")
    parser.add_argument("--window", type=int, default=8, help="appends in flight per session (throughput)")
    parser.add_argument("--idle-sessions", type=int, default=100)
    parser.add_argument("--phase-timeout", type=float, default=60.0, help="seconds before a phase gives up")
    scale = parser.add_argument_group("scale", "--scale runs only these measures (issue 14), against the minimal relay")
    scale.add_argument("--scale", action="store_true",
                       help="ping-pong CPU per round trip, idle CPU and memory, connect storm, ledger exactness")
    scale.add_argument("--pingpong-sessions", type=lambda s: [int(x) for x in s.split(",")], default=[50, 200, 500])
    scale.add_argument("--pingpong-rounds", type=int, default=5,
                       help="turns the targets take at each ping-pong level (the order flips every round)")
    scale.add_argument("--pingpong-events", type=int, default=40000,
                       help="round trips per ping-pong level and target (at least 20 per session)")
    scale.add_argument("--no-floor", dest="floor", action="store_false",
                       help="leave out floor-uvicorn (bench/asgi_relay_floor.py, the server's own cost)")
    scale.add_argument("--idle-cpu-sessions", type=int, default=500)
    scale.add_argument("--idle-cpu-seconds", type=float, default=30.0)
    scale.add_argument("--storm-sessions", type=int, default=200)
    scale.add_argument("--storm-concurrency", type=int, default=50,
                       help="handshakes in progress at once (storm, and every opening of sessions in --scale)")
    scale.add_argument("--ledger-timeout", type=float, default=60.0, help="seconds to wait for the usage writes to settle")
    parser.add_argument("--quick", action="store_true", help="1 run, fewer events: a smoke test (implies --no-write)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave README and results alone")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
                        help="Redis for the gateway ('' for the embedded in-memory defaults)")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    if args.servers is None:
        args.servers = ["uvicorn"] if args.scale else ["daphne", "uvicorn"]
    args.servers = [s for s in args.servers if s]
    unknown = set(args.servers) - set(server_commands(sys.executable))
    if unknown:
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    if args.quick:
        args.runs, args.latency_events, args.throughput_events, args.idle_sessions = 1, 200, 1000, 20
        args.no_write = True  # a smoke test's figures must not replace the recorded table
        if args.scale:
            args.pingpong_sessions, args.pingpong_events = [50, 100], 2000
            args.idle_cpu_sessions, args.idle_cpu_seconds, args.storm_sessions = 100, 5.0, 100
    if args.scale and max(args.pingpong_sessions + [args.idle_cpu_sessions, args.storm_sessions]) > int(
            GATEWAY_ENV["REALTIME_MAX_SESSIONS_PER_KEY"]):
        parser.error("more sessions than REALTIME_MAX_SESSIONS_PER_KEY of GATEWAY_ENV")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    logs = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    print(f"server logs in {logs}", flush=True)
    raw_key, agent_pk = "", 0
    if args.servers:
        print(f"preparing {args.database_url.rsplit('/', 1)[-1]} ...", flush=True)
        prepare_database(args.database_url)
        raw_key, agent_pk = create_bench_project(args.database_url)
    if args.scale:
        return scale_main(args, began, logs, raw_key, agent_pk)
    load_before = os.getloadavg()[0]
    runs = []
    for number in range(1, args.runs + 1):
        servers, targets = start_run(args, raw_key, agent_pk, logs, args.servers)
        try:
            print(f"run {number}/{args.runs}: {', '.join(t.name for t in targets)}", flush=True)
            runs.append(asyncio.run(one_run(targets, args, number)))
        finally:
            for server in servers:
                server.stop()
    micro = json_microbench()
    summary = summarize(runs, args)
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "runs": args.runs,
        "servers": args.servers,
        "arguments": " ".join(sys.argv[1:] if argv is None else argv),
        "window": args.window,
        "idle_sessions": args.idle_sessions,
        "minutes": (time.monotonic() - began) / 60,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }
    section = render(summary, micro, meta)
    print(section)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"meta": meta, "summary": summary, "runs": runs, "json": micro}, indent=1))
        write_readme(section)
        print(f"wrote {README.relative_to(BASE_DIR)} and {RESULTS.relative_to(BASE_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
