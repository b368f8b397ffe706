"""Emergency signing-key retirement reaches every process within the key re-check interval: two
gateway processes that have verified tokens of two keys (one retired by an earlier, ordinary
rotation) refuse both once `rotate_signing_key --verify-seconds 0` has run."""
from __future__ import annotations

import asyncio
import time
from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from tests.test_gateway_support import closed, connect, recv_json, session_url

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

RECHECK_SECONDS = 1.0


@sync_to_async
def mint(key_pk) -> str:
    from realtime.gateway.tokens import token_mint

    return token_mint(api_key_pk=str(key_pk))[0]


@sync_to_async
def rotate(*args: str) -> None:
    call_command("rotate_signing_key", *args, stdout=StringIO())


async def first_event(server, token: str, name: str) -> dict:
    async with await connect(session_url(server, name, token=token)) as ws:
        event = await recv_json(ws)
        await ws.close()
        await closed(ws)
    return event


async def test_a_retired_key_is_refused_by_every_process_within_the_interval(server_factory, dev_key):
    row, _ = dev_key
    env = {"REALTIME_KEY_RECHECK_SECONDS": str(RECHECK_SECONDS)}
    servers = [server_factory(env=env), server_factory(env=env)]
    first = await mint(row.pk)
    await rotate()  # an ordinary rotation: the first key verifies for another hour
    second = await mint(row.pk)
    # Both processes have verified (and cached) both keys.
    for n, server in enumerate(servers):
        for m, token in enumerate((first, second)):
            assert (await first_event(server, token, f"warm-{n}-{m}"))["type"] == "session.created"

    await rotate("--verify-seconds", "0")
    retired_at = time.monotonic()
    for n, server in enumerate(servers):
        for m, token in enumerate((first, second)):
            # Another process's cache has no event to await: poll it, bounded by the interval.
            while True:
                event = await first_event(server, token, f"retired-{n}-{m}-{time.monotonic_ns()}")
                if event["type"] == "error":
                    break
                assert time.monotonic() - retired_at < RECHECK_SECONDS + 3, "a retired key still verifies"
                await asyncio.sleep(0.1)
            assert event["error"]["code"] == "token_bad_signature"
    fresh = await mint(row.pk)
    for n, server in enumerate(servers):
        assert (await first_event(server, fresh, f"fresh-{n}"))["type"] == "session.created"
