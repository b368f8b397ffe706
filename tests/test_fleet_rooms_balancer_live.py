"""Seed 003's Socket.IO client (polling first, then the WebSocket upgrade: socket.io-client's default)
through the shipped haproxy configuration in front of two gateway processes: every client connects
and every message reaches every client of the room, though round robin spreads the clients over both
processes (affinity by Engine.IO session id: deploy/haproxy.cfg)."""
import time

import httpx
import pytest

from tests.test_rooms_live import run_plan

pytestmark = [pytest.mark.live, pytest.mark.timeout(180), pytest.mark.xdist_group("long-waits")]

CLIENTS = 6


def test_seed003_client_through_the_balancer_gets_every_message(cluster_factory):
    fleet = cluster_factory(gateways=2)
    key = fleet.create_key()
    names = [f"c{number}" for number in range(CLIENTS)]
    plan = {
        "scenario": "broadcast",
        "clients": [{"name": name, "url": fleet.entry.http_url, "apiKey": key} for name in names],
        "senders": names, "receivers": names, "isolated": [],
    }
    report = run_plan(plan, timeout=90)
    assert report["connected"] == {name: True for name in names}
    expected = sorted(f"hello from {name}" for name in names)
    for name in names:
        assert sorted(report[name]["received"]) == expected, report[name]
        assert not report[name]["errors"]
    # Both processes held clients: the affinity, not a lucky single process, kept polling working.
    deadline = time.monotonic() + 10
    for gateway in fleet.gateways:
        assert "Invalid session" not in gateway.log()
        while rooms_sessions_served(gateway) < 1:  # counted when the server sees the disconnect
            assert time.monotonic() < deadline, gateway.log()[-2000:]
            time.sleep(0.1)


def rooms_sessions_served(gateway) -> float:
    """Rooms connections this process held, from its /metrics (loopback is allowed to read them)."""
    text = httpx.get(f"{gateway.http_url}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("switchboard_sessions_closed_total{") and 'dialect="rooms"' in line)
