"""Memory of the local agent stays flat while sessions stream silence (issue 11 item 6).

With turn detection on, the agent keeps only the pre-speech window of input audio
(LOCAL_AGENT_PRE_SPEECH_MS) until speech starts. 100 sessions stream silence for 3 minutes at a real
microphone's cadence; the server process's RSS at the end is within 10% of its value after the first
minute, and no append is refused. Audio is G.711 μ-law at 8 kHz (a telephone line) in 200 ms chunks:
a realistic stream that keeps this long test cheap on a shared machine. Before the window, the agent
kept every silent byte: 8 KB a second per session here, about 96 MB over the last two minutes.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest
import websockets

from realtime.lib import audio

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), pytest.mark.timeout(420), pytest.mark.xdist_group("long-waits")]

SECRET = "test-local-agent-secret"
PATH = "/agents/local/v1/realtime"
SESSIONS = 100
CHUNK_MS = 200
WARM_UP_SECONDS = 60
TOTAL_SECONDS = 180


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def children(pid: int) -> list[int]:
    """Direct children (the recognition workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


async def open_session(url: str) -> websockets.ClientConnection:
    ws = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {SECRET}"}, max_size=None)
    assert json.loads(await ws.recv())["type"] == "session.created"
    await ws.send(json.dumps({"type": "session.update", "session": {"audio": {"input": {"format": {"type": audio.PCMU}}}}}))
    updated = json.loads(await ws.recv())
    assert updated["type"] == "session.updated", updated
    return ws


async def collect(ws, received: list) -> None:
    try:
        async for message in ws:
            received.append(json.loads(message))
    except websockets.ConnectionClosed:
        received.append({"type": "closed"})


async def test_a_hundred_silent_sessions_keep_the_agents_memory_flat(server_factory):
    server = server_factory(env={"LOCAL_AGENT_SECRET": SECRET, "SPEECH_WORKERS": "2"},
                            argv=[sys.executable, "manage.py", "run_local_agent", "--port", "{port}"])
    url = server.ws_url + PATH
    sockets = [await open_session(url) for _ in range(SESSIONS)]
    received: list[dict] = []
    readers = [asyncio.create_task(collect(ws, received), name=f"reader-{n}") for n, ws in enumerate(sockets)]
    silence = json.dumps({"type": "input_audio_buffer.append",
                          "audio": audio.b64encode(audio.pcm16_to_ulaw(b"\0" * (8000 * CHUNK_MS // 1000 * 2)))})
    samples: list[tuple[float, int, int]] = []  # seconds, server RSS, workers' RSS (KiB)
    try:
        start = time.monotonic()
        tick = 0
        while (elapsed := time.monotonic() - start) < TOTAL_SECONDS:
            for ws in sockets:
                await ws.send(silence)
            if tick % (10_000 // CHUNK_MS) == 0:
                samples.append((elapsed, rss_kib(server.process.pid),
                                sum(rss_kib(child) for child in children(server.process.pid))))
            tick += 1
            # The microphone's cadence: the next chunk is due CHUNK_MS after the previous one.
            await asyncio.sleep(max(0.0, start + tick * CHUNK_MS / 1000 - time.monotonic()))
        samples.append((time.monotonic() - start, rss_kib(server.process.pid),
                        sum(rss_kib(child) for child in children(server.process.pid))))
    finally:
        for ws in sockets:
            await ws.close()
        await asyncio.gather(*readers, return_exceptions=True)

    report = "\n".join(f"{s:6.1f} s  server {r / 1024:7.1f} MiB  workers {w / 1024:7.1f} MiB" for s, r, w in samples)
    print(report)
    errors = [event for event in received if event["type"] == "error"]
    assert errors == [], errors[:3]
    at_one_minute = next(rss for seconds, rss, _ in samples if seconds >= WARM_UP_SECONDS)
    assert samples[-1][1] <= at_one_minute * 1.10, report
    assert "Traceback" not in server.log(), server.log()[-3000:]
