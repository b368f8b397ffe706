"""Fleet benchmark: failover time, drain time, and relay throughput of 1 versus 2 gateway processes
behind the shipped haproxy configuration (deploy/haproxy.cfg).

Everything runs on loopback through the fault-test harness (tests/support/cluster.py): its own
redis-server and PostgreSQL cluster, uvicorn gateways with the README's production flags, haproxy,
and bench/echo_upstream.py as the agent.

- relay throughput: S realtime sessions through haproxy, each keeping W small events in flight until
  it has relayed N round trips; events per second (client -> gateway -> upstream -> gateway -> client).
  "1 process": haproxy's two server lines both name gateway 1; "2 processes": one each. The ratio of
  the two, measured in the same run, is the figure to compare across machines.
- failover: 8 sessions spread over both processes; SIGKILL one; time until every client it held is
  streaming again on the survivor (reconnecting through haproxy as a client would).
- drain: 8 live sessions on one process; SIGTERM; time until every client was told (error event and
  1012) and until the process exited.

Run: ``.venv/bin/python bench/fleet.py [--runs 3] [--quick]``; writes its section of bench/README.md.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.support import readme_section_write  # noqa: E402
from tests.support.cluster import Cluster, Haproxy  # noqa: E402
from tests.support.streams import Streamer, open_session  # noqa: E402

EVENT = json.dumps({"type": "conversation.item.create", "event_id": "x",
                    "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x" * 200}]}})


async def relay_throughput(ws_url: str, key: str, sessions: int, per_session: int, window: int) -> float:
    sockets = [(await open_session(ws_url, key))[0] for _ in range(sessions)]

    async def drive(ws) -> None:
        sent = received = 0
        while sent < min(window, per_session):
            await ws.send(EVENT)
            sent += 1
        while received < per_session:
            raw = await ws.recv()
            if '"conversation.item.create"' in raw:
                received += 1
                if sent < per_session:
                    await ws.send(EVENT)
                    sent += 1

    started = time.monotonic()
    async with asyncio.timeout(300):
        await asyncio.gather(*(drive(ws) for ws in sockets))
    elapsed = time.monotonic() - started
    for ws in sockets:
        await ws.close()
    return sessions * per_session / elapsed


async def reconnect_streaming(ws_url: str, key: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            ws, first = await open_session(ws_url, key)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        if first["type"] == "session.created":
            stream = Streamer(ws, interval=0.05).start()
            await stream.echoes_after(0)
            await stream.stop()
            return
        await ws.close()
        await asyncio.sleep(0.05)
    raise TimeoutError("no session on the survivor before the deadline")


async def failover_seconds(fleet: Cluster, key: str, sessions: int = 8) -> float:
    streams = []
    for _ in range(sessions):
        ws, first = await open_session(fleet.entry.ws_url, key)
        streams.append(Streamer(ws, interval=0.05).start())
    for stream in streams:
        await stream.echoes_after(1)
    victim = fleet.gateways[0]
    victim.kill()
    killed = time.monotonic()
    await asyncio.sleep(0.2)
    lost = [stream for stream in streams if not stream.open]
    await asyncio.gather(*(reconnect_streaming(fleet.entry.ws_url, key, killed + 30) for _ in lost))
    took = time.monotonic() - killed
    for stream in streams:
        await stream.stop()
    victim.start()
    return took


async def drain_seconds(fleet: Cluster, key: str, sessions: int = 8) -> tuple[float, float]:
    gateway = fleet.gateways[1]
    streams = []
    for _ in range(sessions):
        ws, _first = await open_session(gateway.ws_url, key)
        streams.append(Streamer(ws, interval=0.05).start())
    for stream in streams:
        await stream.echoes_after(1)
    started = time.monotonic()
    gateway.signal(15)
    await asyncio.gather(*(stream.closed(60) for stream in streams))
    told = time.monotonic() - started
    assert all(stream.close_code == 1012 for stream in streams)
    await asyncio.to_thread(gateway.process.wait, 60)
    exited = time.monotonic() - started
    gateway._forget()
    gateway.start()
    return told, exited


async def one_run(args, workdir: Path) -> dict:
    fleet = Cluster(workdir, gateways=2, env={"REALTIME_MAX_SESSIONS_PER_KEY": "200",
                                              "REALTIME_EVENTS_PER_SECOND": "100000", "REALTIME_EVENT_BURST": "100000"})
    with fleet:
        key = fleet.create_key()
        fleet.custom_deployment(fleet.echo_upstream().ws_url)
        single = Haproxy(workdir, fleet.gateways[:1])
        single.start()
        try:
            one = await relay_throughput(single.ws_url, key, args.sessions, args.per_session, args.window)
        finally:
            single.stop()
        two = await relay_throughput(fleet.entry.ws_url, key, args.sessions, args.per_session, args.window)
        failover = await failover_seconds(fleet, key)
        told, exited = await drain_seconds(fleet, key)
    return {"one_process_eps": one, "two_processes_eps": two, "ratio": two / one,
            "failover_s": failover, "drain_told_s": told, "drain_exit_s": exited}


def render(runs: list[dict], args) -> str:
    def median(name: str) -> float:
        return statistics.median(run[name] for run in runs)

    rows = [
        ("relay, 1 process behind haproxy (events/s)", f"{median('one_process_eps'):,.0f}"),
        ("relay, 2 processes behind haproxy (events/s)", f"{median('two_processes_eps'):,.0f}"),
        ("ratio 2 : 1 processes (same run)",
         f"{median('ratio'):.2f} (runs: {min(r['ratio'] for r in runs):.2f}-{max(r['ratio'] for r in runs):.2f})"),
        ("failover: SIGKILL to every lost client streaming on the survivor (s)", f"{median('failover_s'):.2f}"),
        ("drain: SIGTERM to every client told (error + 1012) (s)", f"{median('drain_told_s'):.2f}"),
        ("drain: SIGTERM to process exit (s)", f"{median('drain_exit_s'):.2f}"),
    ]
    lines = [
        "<!-- fleet:begin (written by bench/fleet.py) -->",
        "## Fleet (`bench/fleet.py`)",
        "",
        f"Median of {len(runs)} runs; {args.sessions} sessions x {args.per_session} round trips, {args.window} in flight "
        "each, through haproxy (deploy/haproxy.cfg) to uvicorn gateways (README flags) and bench/echo_upstream.py; "
        "own redis-server and PostgreSQL cluster (tests/support/cluster.py). Failover and drain with 8 sessions.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
        "**The machine was shared and busy** (2 cores, several engineers' test runs at once): the load generator, "
        "haproxy, both gateways, the echo upstream, Redis and PostgreSQL all share those 2 cores, so the 2-process "
        "figure is bounded by the machine, not by the gateway; read the ratio, not the absolute numbers.",
        "",
        "| measure | median |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in rows],
        "",
        "Per run: " + "; ".join(
            f"{run['one_process_eps']:,.0f} / {run['two_processes_eps']:,.0f} ev/s, failover {run['failover_s']:.2f} s, "
            f"drain {run['drain_told_s']:.2f} s / exit {run['drain_exit_s']:.2f} s" for run in runs) + ".",
        "",
        "Failover here is with the key well below its concurrent-session cap: a lost client's new session "
        "needs no slot of the dead process. At the cap, the dead process's slots lapse with its liveness lease "
        "(realtime/gateway/liveness.py: 3 s, renewed every second), so failover takes up to about 3.5 s "
        "(tests/test_fleet_failover_live.py holds it under 5 s). Drain time is the time to tell every client, "
        "flush usage and close the session records (DRAIN_GRACE_SECONDS bounds it).",
        "<!-- fleet:end -->",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--per-session", type=int, default=1000)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="1 run, fewer events (a smoke test)")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.per_session = 1, 200
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory(prefix="sb-bench-fleet-") as tmp:
        for number in range(args.runs):
            result = asyncio.run(one_run(args, Path(tmp) / f"run{number}"))
            print(json.dumps(result), flush=True)
            runs.append(result)
    results = BASE_DIR / "bench" / "results" / "fleet.json"
    results.write_text(json.dumps({"args": vars(args), "runs": runs}, indent=2) + "\n")
    section = render(runs, args)
    print(section)
    if not args.no_readme:
        readme_section_write(name="fleet", section=section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
