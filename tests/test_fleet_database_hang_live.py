"""A PostgreSQL hang (SIGSTOP: connections stay open, nothing answers) on a fleet of two processes:
live realtime sessions keep relaying, a new session is refused with ``service_unavailable`` (1013)
within a bound instead of hanging, and once the database resumes new sessions are served again."""
import asyncio
import time

import pytest

from tests.support.streams import open_session, refusal, streamers

pytestmark = [pytest.mark.live, pytest.mark.timeout(240), pytest.mark.xdist_group("long-waits")]

HANG_SECONDS = 12
ADMISSION_BOUND = 3.0


async def test_database_hang_refuses_new_sessions_in_bounded_time_and_keeps_live_ones(cluster_factory):
    fleet = cluster_factory(gateways=2, env={"REALTIME_ADMISSION_TIMEOUT_SECONDS": str(ADMISSION_BOUND)})
    key = fleet.create_key()
    fleet.custom_deployment(fleet.echo_upstream().ws_url)
    live = await streamers(fleet.entry.ws_url, key, 6)
    for stream in live:
        await stream.echoes_after(2)

    fleet.postgres.pause()
    hung_at = time.monotonic()
    try:
        for target in [*fleet.gateways, fleet.entry]:
            error, close_code, took = await refusal(target.ws_url, key)
            assert (error["code"], close_code) == ("service_unavailable", 1013)
            assert took < ADMISSION_BOUND + 2.0, f"refusal took {took:.2f} s"
        counts = [stream.echoed for stream in live]
        await asyncio.sleep(max(0.0, HANG_SECONDS - (time.monotonic() - hung_at)))
        for stream, before in zip(live, counts):
            await stream.echoes_after(before + 5)
    finally:
        fleet.postgres.resume()

    async with asyncio.timeout(20):
        while True:
            ws, first = await open_session(fleet.entry.ws_url, key)
            await ws.close()
            if first["type"] == "session.created":
                break
            assert first["error"]["code"] == "service_unavailable", first
            await asyncio.sleep(0.2)
    assert all(stream.open for stream in live), [(s.close_code, s.errors) for s in live]
    for gateway in fleet.gateways:
        assert gateway.log().count("database unavailable") == 1, gateway.log()[-3000:]
    for stream in live:
        await stream.stop()
