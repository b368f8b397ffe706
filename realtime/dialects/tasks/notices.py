"""Notices about task sessions between gateway processes, over Redis pub/sub (one subscription per
process, not per connection).

``pending``: a process buffered a result of a session (no connection of it was attached there); a
process holding a connection of that session takes the outbox. ``takeover``: a connection resumed a
session; connections of it in other processes (perhaps dead without anyone knowing: a silent network
drop) step aside and put their unconfirmed results back into the outbox.

Notices are at-most-once; the outbox is not (a connection also takes it when it attaches and on its
periodic lease refresh). Without REDIS_URL there is one process and nothing to send. A Redis outage
only delays notices: the listener retries, and no live connection depends on it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable

from django.conf import settings

from realtime.gateway.limits import redis_client

logger = logging.getLogger(__name__)

PROCESS_TAG = uuid.uuid4().hex  # this process's notices are not for itself

Handler = Callable[[str, str], None]  # (kind, session_uuid)

_handler: Handler | None = None
_listener: asyncio.Task | None = None


def _channel() -> str:
    return f"{settings.REDIS_PREFIX}:tasks:notices"


async def task_notice_send(*, kind: str, session_uuid: str) -> None:
    client = redis_client()
    if client is None:
        return
    try:
        await client.publish(_channel(), json.dumps({"k": kind, "s": session_uuid, "p": PROCESS_TAG}))
    except Exception:  # at-most-once anyway: the outbox is taken on attach and on lease refresh
        logger.warning("tasks: could not publish a %s notice", kind, exc_info=True)


def task_notices_listen(handler: Handler) -> None:
    """Start this process's listener (once) calling ``handler(kind, session_uuid)``."""
    global _handler, _listener
    _handler = handler
    if settings.REDIS_URL and (_listener is None or _listener.done()):
        _listener = asyncio.get_running_loop().create_task(_listen(), name="tasks-notices")


async def _listen() -> None:
    import redis.asyncio

    from realtime.lib.redis_options import redis_options

    while True:
        client = redis.asyncio.Redis.from_url(settings.REDIS_URL, decode_responses=True, **redis_options())
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(_channel())
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        notice = json.loads(message["data"])
                    except (TypeError, ValueError):
                        continue
                    if notice.get("p") != PROCESS_TAG and _handler is not None:
                        _handler(str(notice.get("k")), str(notice.get("s")))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("tasks: notice listener lost Redis; retrying", exc_info=True)
            await asyncio.sleep(1)
        finally:
            await client.aclose()
