"""Free loopback ports for the servers the tests start, safe when pytest-xdist runs workers side by side.

``bind(port 0)`` hands out a port from the kernel's ephemeral range, and the port is free again
between the probe and the moment the child process listens on it: another worker (or an outgoing
connection) may be handed the same one then. So ports come from below the ephemeral range, each
worker from a slice of its own, one after another (a port is not handed out twice in a run), each
probed with a bind first (a port someone else holds is skipped).
"""
from __future__ import annotations

import itertools
import os
import random
import socket
import threading
from pathlib import Path

POOL_START = 10_000


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _worker_slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1), index + 1)
    size = (_ephemeral_start() - POOL_START) // count
    return range(POOL_START + index * size, POOL_START + (index + 1) * size)


_slice = _worker_slice()
# A random start: two test runs on one machine (two checkouts) seldom probe the same ports at once.
_offset = random.randrange(max(len(_slice), 1))
_counter = itertools.count()
_lock = threading.Lock()


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    if len(_slice) < 100:  # an unusual ip_local_port_range: fall back to the kernel's choice
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    with _lock:
        for _ in range(len(_slice)):
            port = _slice.start + (_offset + next(_counter)) % len(_slice)
            if _bindable(port):
                return port
    raise RuntimeError(f"no free port in {_slice}")
