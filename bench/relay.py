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


async def session_open(target: Target) -> ClientConnection:
    """Connect, then send one append and wait for its echo: the session is then fully relayed."""
    ws = await connect(target.url, additional_headers=target.headers, compression=None, max_size=16 * 1024 * 1024,
                       ping_interval=None, open_timeout=30)
    await ws.send(frame("warm", 0))
    async with asyncio.timeout(30):
        while True:
            event = orjson.loads(await ws.recv())
            if event.get("event_id") == "evt_warm0":
                return ws
            if event.get("type") == "error":
                raise RuntimeError(f"{target.name}: error while opening a session: {event.get('error')}")


async def sessions_open(target: Target, count: int) -> list[ClientConnection]:
    gate = asyncio.Semaphore(20)  # a burst of 100 handshakes at once only measures the accept backlog

    async def one():
        async with gate:
            return await session_open(target)

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def sessions_close(sockets: list[ClientConnection]) -> None:
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


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


def server_commands(py: str) -> dict[str, list[str]]:
    """How each ASGI server is started: one process (granian and hypercorn: one worker), loopback,
    access logs off. ``uvicorn`` is the production command of README.md ("Running several processes")."""
    uvicorn = [py, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1", "--port", "{port}",
               "--loop", "uvloop", "--http", "httptools", "--lifespan", "off", "--no-access-log",
               "--log-level", "warning"]
    bin_dir = Path(py).parent
    return {
        "daphne": [py, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "project.asgi:application"],
        "uvicorn": [*uvicorn, "--ws", "websockets-sansio", "--ws-per-message-deflate", "false"],
        "uvicorn-websockets": [*uvicorn, "--ws", "websockets", "--ws-per-message-deflate", "false"],
        "uvicorn-wsproto": [*uvicorn, "--ws", "wsproto", "--ws-per-message-deflate", "false"],
        # NOT_REQUIRED: measured, not chosen.
        "granian": [str(bin_dir / "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", "{port}",
                    "--loop", "uvloop", "--workers", "1", "--no-log", "project.asgi:application"],
        "hypercorn": [str(bin_dir / "hypercorn"), "-b", "127.0.0.1:{port}", "-k", "uvloop", "-w", "1",
                      "project.asgi:application"],
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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Relay benchmark (see the module docstring).")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sessions", type=lambda s: [int(x) for x in s.split(",")], default=[1, 50, 100])
    parser.add_argument("--servers", type=lambda s: s.split(","), default=["daphne", "uvicorn"],
                        help="ASGI servers to run the gateway under (daphne, uvicorn, uvicorn-websockets, "
                             "uvicorn-wsproto, granian, hypercorn); empty: no gateway")
    parser.add_argument("--latency-events", type=int, default=1000, help="round trips per level and target")
    parser.add_argument("--throughput-events", type=int, default=5000, help="appends per level and target")
    parser.add_argument("--window", type=int, default=8, help="appends in flight per session (throughput)")
    parser.add_argument("--idle-sessions", type=int, default=100)
    parser.add_argument("--phase-timeout", type=float, default=60.0, help="seconds before a phase gives up")
    parser.add_argument("--quick", action="store_true", help="1 run, fewer events: a smoke test (implies --no-write)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave README and results alone")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
                        help="Redis for the gateway ('' for the embedded in-memory defaults)")
    args = parser.parse_args(argv)
    args.servers = [s for s in args.servers if s]
    unknown = set(args.servers) - set(server_commands(sys.executable))
    if unknown:
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    if args.quick:
        args.runs, args.latency_events, args.throughput_events, args.idle_sessions = 1, 200, 1000, 20
        args.no_write = True  # a smoke test's figures must not replace the recorded table
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
