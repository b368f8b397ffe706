"""SIGKILL of one gateway process behind the shipped haproxy configuration: its clients reconnect
through the balancer and stream again on the survivor within 5 s; the dead process's per-key slots
are free (the key's cap is exactly the number of sessions); a resume of a dead process's session is
answered at once with a code, never ``session_elsewhere`` naming the dead process."""
import asyncio
import time
import uuid

import pytest
import websockets

from tests.support.streams import Streamer, open_session

pytestmark = [pytest.mark.live, pytest.mark.timeout(240), pytest.mark.xdist_group("long-waits")]

SESSIONS = 8
FAILOVER_SECONDS = 5.0


async def reconnect(ws_url: str, key: str, deadline: float) -> tuple[Streamer, list[str]]:
    """Open a new session, retrying what a client retries (refused connects, too_many_sessions)."""
    refusals = []
    while time.monotonic() < deadline:
        try:
            ws, first = await open_session(ws_url, key)
        except (OSError, websockets.InvalidStatus, websockets.ConnectionClosed) as exc:
            refusals.append(type(exc).__name__)
            await asyncio.sleep(0.1)
            continue
        if first["type"] == "session.created":
            return Streamer(ws).start(), refusals
        refusals.append(first["error"]["code"])
        await ws.close()
        await asyncio.sleep(0.1)
    raise AssertionError(f"no session before the deadline; refusals: {refusals}")


async def test_sigkill_failover_within_five_seconds_with_slots_free(cluster_factory):
    fleet = cluster_factory(gateways=2, env={"REALTIME_MAX_SESSIONS_PER_KEY": str(SESSIONS)})
    key = fleet.create_key()
    fleet.custom_deployment(fleet.echo_upstream().ws_url)
    run = uuid.uuid4().hex[:8]
    streams: list[tuple[str, Streamer]] = []
    for number in range(SESSIONS):
        session_key = f"s{number}-{run}"
        ws, first = await open_session(fleet.entry.ws_url, key, session_key=session_key)
        assert first["type"] == "session.created", first
        streams.append((session_key, Streamer(ws).start()))
    for _, stream in streams:
        await stream.echoes_after(2)

    fleet.gateways[0].kill()
    killed_at = time.monotonic()
    # The dead process's clients see their connection end.
    await asyncio.sleep(0.5)
    lost = [(session_key, stream) for session_key, stream in streams if not stream.open]
    survivors = [stream for _, stream in streams if stream.open]
    assert 0 < len(lost) < SESSIONS, "round robin put sessions on both processes"

    async def fail_over(session_key: str) -> tuple[float, dict, list[str]]:
        # A resume of the lost session is answered at once, with a code the client can act on:
        # session_elsewhere (retry) while the dead process's heartbeat has not lapsed, then
        # session_not_resumable (start a new session).
        while True:
            asked = time.monotonic()
            ws, first = await open_session(fleet.entry.ws_url, key, session_key=session_key, resume=True)
            answered = time.monotonic() - asked
            await ws.close()
            assert first["type"] == "error", first
            assert answered < 1.0, (first, answered)
            if first["error"]["code"] != "session_elsewhere":
                break
            assert time.monotonic() - killed_at < FAILOVER_SECONDS, "still session_elsewhere"
            await asyncio.sleep(0.2)
        stream, _refusals = await reconnect(fleet.entry.ws_url, key, killed_at + 20)
        await stream.echoes_after(0)
        streaming_after = time.monotonic() - killed_at
        await stream.stop()
        return streaming_after, {"code": first["error"]["code"], "answered": answered}, _refusals

    results = await asyncio.gather(*(fail_over(session_key) for session_key, _ in lost))
    for streaming_after, resume, _refusals in results:
        assert resume["code"] == "session_not_resumable", resume
        assert resume["answered"] < 1.0, resume
        assert streaming_after < FAILOVER_SECONDS, results
    # The survivor's own sessions never noticed.
    for stream in survivors:
        await stream.echoes_after(stream.echoed + 2)
        await stream.stop()
