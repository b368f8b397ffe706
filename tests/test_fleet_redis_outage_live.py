"""A Redis outage mid-session, on a fleet of two uvicorn processes behind the shipped haproxy
configuration: live realtime sessions keep relaying, new sessions are refused at once with
``service_unavailable`` (close 1013) and one log line per process, and everything recovers without a
restart once Redis is back."""
import asyncio
import time

import httpx
import pytest

from tests.support.streams import open_session, refusal, streamers

pytestmark = [pytest.mark.live, pytest.mark.timeout(240), pytest.mark.xdist_group("long-waits")]

SESSIONS = 10
OUTAGE_SECONDS = 10


async def readiness(gateway) -> dict:
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(f"{gateway.http_url}/readyz")).json()


async def until_ready(gateways, ready: bool, timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while True:
            states = [await readiness(gateway) for gateway in gateways]
            if all((state["status"] == "ready") == ready for state in states):
                return
            await asyncio.sleep(0.1)


async def test_redis_outage_keeps_live_sessions_and_refuses_new_ones_with_a_code(cluster_factory):
    fleet = cluster_factory(gateways=2)
    key = fleet.create_key()
    fleet.custom_deployment(fleet.echo_upstream().ws_url)
    live = await streamers(fleet.entry.ws_url, key, SESSIONS)
    for stream in live:
        await stream.echoes_after(2)

    fleet.redis.stop()
    outage_started = time.monotonic()
    await until_ready(fleet.gateways, ready=False)
    # New sessions, straight to each process and through the balancer: refused at once, with the code.
    for target in [*fleet.gateways, fleet.entry]:
        for _attempt in range(3):
            error, close_code, took = await refusal(target.ws_url, key)
            assert (error["code"], close_code) == ("service_unavailable", 1013)
            assert took < 2.0, f"refusal took {took:.2f} s"
    # The live sessions relay throughout the outage.
    counts = [stream.echoed for stream in live]
    await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_started)))
    for stream, before in zip(live, counts):
        await stream.echoes_after(before + 5)

    fleet.redis.start()
    await until_ready(fleet.gateways, ready=True)
    ws, first = await open_session(fleet.entry.ws_url, key)
    assert first["type"] == "session.created", first
    await ws.close()
    for stream in live:
        await stream.echoes_after(stream.echoed + 3)
    assert all(stream.open for stream in live), [(s.close_code, s.errors) for s in live]

    for gateway in fleet.gateways:
        log = gateway.log()
        assert log.count("redis unavailable") == 1, log[-3000:]
        assert "redis available again" in log
        assert "Traceback" not in log, log[-3000:]
    for stream in live:
        await stream.stop()
