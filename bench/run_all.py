"""Run every benchmark in bench/ (``make bench``), one after another, each bounded in time.

A benchmark is any ``bench/*.py`` script except this one, files starting with ``_``, and helpers that
other benchmarks spawn (they say so with a module-level ``BENCH_HELPER = True``). Each writes its own
section of bench/README.md. Extra arguments are passed to every script (e.g. ``--quick``).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
TIMEOUT_SECONDS = 30 * 60
HELPER = re.compile(r"^BENCH_HELPER\s*=\s*True\b", re.M)


def benchmarks() -> list[Path]:
    return [
        path for path in sorted(BENCH_DIR.glob("*.py"))
        if path.name != Path(__file__).name and not path.name.startswith("_") and not HELPER.search(path.read_text())
    ]


def main(argv: list[str]) -> int:
    failed = []
    for path in benchmarks():
        print(f"== {path.name}", flush=True)
        started = time.monotonic()
        # Its own process group, so a timeout also stops the servers the benchmark started.
        process = subprocess.Popen([sys.executable, str(path), *argv], cwd=BENCH_DIR.parent, start_new_session=True)
        try:
            code = process.wait(timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
            code = "timeout"
        print(f"== {path.name}: {'ok' if code == 0 else f'FAILED ({code})'} in {time.monotonic() - started:.0f} s", flush=True)
        if code != 0:
            failed.append(path.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
