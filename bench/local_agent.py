"""Local agent benchmark: speech real-time factors, turn latency, and concurrent talking sessions.

    .venv/bin/python bench/local_agent.py [--runs 5] [--max-sessions 32] [--quick]

1. Real-time factor (processing time / audio duration) of speech recognition, fed in 100 ms chunks as
   the agent does, and of synthesis (eSpeak NG), on eSpeak-spoken sentences, in this process.
2. A real agent process (``manage.py run_local_agent``) and real WebSocket clients streaming a short
   utterance at real-time pace: time from ``input_audio_buffer.speech_stopped`` to the first
   ``response.output_audio.delta``.
3. The same with N sessions talking at once, N growing until the median latency passes twice the
   one-session median measured in the same run.

Writes its section of bench/README.md (between the local_agent markers) and bench/results/local_agent.json.
Medians of ``--runs`` runs.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django  # noqa: E402

django.setup()

import websockets  # noqa: E402

from realtime import audio, speech  # noqa: E402

SECRET = "bench-local-agent"
SENTENCES = ["please tell me the weather in london", "what is the weather today",
             "the quick brown fox jumps over the lazy dog", "hello world, how are you doing this morning"]
SHORT = "what time is it"


def rtf_recognition(runs: int) -> float:
    ratios = []
    for _ in range(runs):
        for text in SENTENCES:
            pcm = speech.text_to_speech(text, sample_rate=16000, voice="sage")
            recognizer = speech.Recognizer()
            started = time.perf_counter()
            for offset in range(0, len(pcm), 3200):
                recognizer.feed(pcm[offset:offset + 3200])
            recognizer.finish()
            ratios.append((time.perf_counter() - started) / (len(pcm) / 32000))
    return statistics.median(ratios)


def rtf_synthesis(runs: int) -> float:
    ratios = []
    for _ in range(runs):
        for text in SENTENCES:
            started = time.perf_counter()
            pcm = speech.text_to_speech(text, sample_rate=24000)
            ratios.append((time.perf_counter() - started) / (len(pcm) / 48000))
    return statistics.median(ratios)


def start_agent() -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LOCAL_AGENT_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
    log = open(Path(tempfile.gettempdir()) / "local_agent_bench_server.log", "wb")  # for a failed run
    process = subprocess.Popen([sys.executable, "manage.py", "run_local_agent", "--port", str(port)], cwd=BASE_DIR,
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the agent did not start")


async def one_turn(url: str, utterance: bytes, start_delay: float) -> float:
    """Seconds from speech_stopped to the first audio delta, streaming in real time."""
    await asyncio.sleep(start_delay)
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {SECRET}"}, max_size=None) as ws:
        await ws.recv()  # session.created
        stopped_at: float | None = None
        first_audio = asyncio.get_running_loop().create_future()

        async def reader():
            nonlocal stopped_at
            async for raw in ws:
                event = json.loads(raw)
                if event["type"] == "input_audio_buffer.speech_stopped":
                    stopped_at = time.perf_counter()
                elif event["type"] == "response.output_audio.delta" and stopped_at and not first_audio.done():
                    first_audio.set_result(time.perf_counter() - stopped_at)
                elif event["type"] == "error":
                    raise RuntimeError(event)

        reading = asyncio.create_task(reader(), name="bench-reader")
        chunk = audio.bytes_for_ms(100, audio.PCM)
        began = time.perf_counter()
        for index, offset in enumerate(range(0, len(utterance), chunk)):
            await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                      "audio": base64.b64encode(utterance[offset:offset + chunk]).decode()}))
            # Microphone pace: chunk n leaves at n * 100 ms.
            await asyncio.sleep(max(0.0, began + (index + 1) * 0.1 - time.perf_counter()))
        try:
            return await asyncio.wait_for(first_audio, 30)
        except TimeoutError:
            return math.inf  # no reply within 30 s: counted, and it ends the escalation
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)


async def latency(url: str, utterance: bytes, sessions: int, runs: int) -> float:
    results = []
    for _ in range(runs):
        # Sessions start spread over one utterance, as independent callers would.
        spread = len(utterance) / 48000
        results += await asyncio.gather(*(one_turn(url, utterance, spread * i / sessions) for i in range(sessions)))
    return statistics.median(results)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-sessions", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="3 runs, at most 8 sessions")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.max_sessions = 3, 8

    load = os.getloadavg()
    stt = rtf_recognition(args.runs)
    tts = rtf_synthesis(args.runs)
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; cores: {os.cpu_count()}", flush=True)
    print(f"RTF recognition {stt:.3f}, synthesis {tts:.4f}", flush=True)

    pcm = speech.text_to_speech(SHORT, sample_rate=24000, voice="sage")
    utterance = b"\0" * 24000 + pcm + b"\0" * 48000  # 0.5 s silence, speech, 1 s silence
    process, port = start_agent()
    url = f"ws://127.0.0.1:{port}/agents/local/v1/realtime"
    try:
        await one_turn(url, utterance, 0)  # warm-up: worker processes load their decoders
        baseline = await latency(url, utterance, 1, args.runs)
        print(f"1 session: {baseline * 1000:.0f} ms", flush=True)
        rows = [(1, baseline)]
        sustained, doubled = 1, False
        sustained_goal = 1 if baseline < 0.3 else 0
        sessions = 2
        # Past the doubling point too, up to the 300 ms goal: a small baseline doubles on noise alone.
        while sessions <= args.max_sessions:
            median = await latency(url, utterance, sessions, max(2, args.runs // 2))
            rows.append((sessions, median))
            print(f"{sessions} sessions: {median * 1000:.0f} ms ({median / baseline:.2f}x)", flush=True)
            doubled = doubled or median > 2 * baseline
            if not doubled:
                sustained = sessions
            if median < 0.3 and sustained_goal == rows[-2][0]:
                sustained_goal = sessions
            if median > max(2 * baseline, 0.3):
                break
            sessions = sessions * 2 if sessions < 8 else sessions + 4
    finally:
        process.terminate()
        process.wait(timeout=10)

    load_after = os.getloadavg()
    lines = ["| measure | result | goal |", "|---|---:|---|",
             f"| speech recognition real-time factor (pocketsphinx, fed in 100 ms chunks) | {stt:.3f} | < 0.3: {'met' if stt < 0.3 else 'MISSED'} |",
             f"| speech synthesis real-time factor (eSpeak NG) | {tts:.4f} | < 0.3: {'met' if tts < 0.3 else 'MISSED'} |",
             f"| `speech_stopped` to first `response.output_audio.delta`, 1 session, \"{SHORT}\" | {baseline * 1000:.0f} ms "
             f"| < 300 ms: {'met' if baseline < 0.3 else 'MISSED'} |"]
    for sessions, median in rows[1:]:
        lines.append(f"| same, {sessions} sessions talking at once | {median * 1000:.0f} ms ({median / baseline:.2f}x) | |")
    lines.append(f"| concurrent talking sessions within 2x the one-session latency | {sustained} | |")
    lines.append(f"| concurrent talking sessions with a median under 300 ms | {sustained_goal} | |")
    table = "\n".join(lines)
    print("\n" + table)
    write_readme(table, runs=args.runs, load=(load, load_after))
    results = BASE_DIR / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "local_agent.json").write_text(json.dumps({
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": args.runs,
        "load_before": load, "load_after": load_after, "rtf_recognition": stt, "rtf_synthesis": tts,
        "latency_seconds_by_sessions": dict(rows), "sustained_sessions": sustained,
        "sessions_under_300_ms": sustained_goal}, indent=2) + "\n")


def write_readme(table: str, *, runs: int, load: tuple) -> None:
    from django.conf import settings

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    section = f"""<!-- local_agent:begin (written by bench/local_agent.py; edit the script, not this section) -->
## Local agent (`bench/local_agent.py`)

Measured {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())} on {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}.
Median of {runs} runs ({max(2, runs // 2)} at each concurrency above one). SPEECH_WORKERS={settings.SPEECH_WORKERS}
(recognition processes). The 1-minute load average was {load[0][0]:.2f} before and {load[1][0]:.2f} after: other
work on the shared machine competes for the same cores, so these are pessimistic figures.

Run: `.venv/bin/python bench/local_agent.py` (`--quick` for fewer runs). Needs nothing else running; about 3 minutes.

Real-time factor = processing time / audio duration, on four eSpeak-spoken sentences, in one thread. Latency:
a real agent process (`manage.py run_local_agent`) and real WebSocket clients, each streaming
0.5 s of silence, "{SHORT}" and 1 s of silence in 100 ms appends at real-time pace (server VAD,
500 ms silence to end the turn; the time measured starts when the client receives `speech_stopped`, so it
covers final recognition, the reply and the first synthesised chunk). Sessions of one concurrency level start
spread over one utterance.

{table}
<!-- local_agent:end -->
"""
    readme = BASE_DIR / "bench" / "README.md"
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    pattern = re.compile(r"<!-- local_agent:begin.*?<!-- local_agent:end -->\n", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    readme.write_text(text)


if __name__ == "__main__":
    asyncio.run(main())
