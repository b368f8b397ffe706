"""The deployments sessions open on (with their agent and decrypted credential), cached per process,
so opening a session on a known deployment reads no database.

Invalidation: any change to a Deployment or an Agent (a save or delete, from the portal, REST or the
admin) clears this process's cache at once and bumps a generation number in Redis; every process reads
that number in the heartbeat it sends each second anyway (realtime.gateway.liveness) and clears its own
cache when it moved. So a changed agent URL or credential reaches new sessions on every process within
about a second. Without Redis there is one process. DEPLOYMENT_CACHE_SECONDS bounds what a missed notice
could leave (a bulk ``QuerySet.update`` sends no signal, and Redis may be briefly away).
"""
from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

CACHE_MAX = 10_000

# (project id, environment id, deployment key or None for the default) -> (stored at, deployment, credential)
_entries: dict[tuple[int, int, str | None], tuple[float, Any, str]] = {}
_generation: dict[str, str | None] = {"seen": None}


def generation_key() -> str:
    return f"{settings.REDIS_PREFIX}:agents:deployments:generation"


def deployment_cache_get(*, project_id: int, environment_id: int, deployment_key: str | None):
    """(deployment with its agent, credential), or None when not cached (or too old)."""
    entry = _entries.get((project_id, environment_id, deployment_key))
    if entry is None:
        return None
    stored_at, deployment, credential = entry
    if time.monotonic() - stored_at > settings.DEPLOYMENT_CACHE_SECONDS:
        _entries.pop((project_id, environment_id, deployment_key), None)
        return None
    return deployment, credential


def deployment_cache_put(*, project_id: int, environment_id: int, deployment_key: str | None,
                         deployment, credential: str) -> None:
    if settings.DEPLOYMENT_CACHE_SECONDS <= 0:
        return
    if len(_entries) >= CACHE_MAX:
        _entries.clear()
    _entries[(project_id, environment_id, deployment_key)] = (time.monotonic(), deployment, credential)


def deployment_cache_clear() -> None:
    _entries.clear()


def deployment_cache_generation_seen(generation: str | None) -> None:
    """The generation read by this process's heartbeat: a change elsewhere clears the cache here."""
    if generation != _generation["seen"]:
        _generation["seen"] = generation
        _entries.clear()


def deployments_changed(**_signal_kwargs) -> None:
    """A Deployment or Agent was saved or deleted (a signal receiver). Once the change is committed
    (before, another process could cache the old row again): clear here and tell the others."""
    from django.db import transaction

    _entries.clear()
    transaction.on_commit(_announce)


def _announce() -> None:
    _entries.clear()
    if not settings.REDIS_URL:
        return
    try:
        _redis_sync().incr(generation_key())
    except Exception:  # Redis away: other processes drop their entries within DEPLOYMENT_CACHE_SECONDS
        logger.warning("could not announce a deployment change; other processes follow within %ss",
                       settings.DEPLOYMENT_CACHE_SECONDS, exc_info=True)


_clients: dict[str, Any] = {}


def _redis_sync():
    import redis

    from realtime.lib.redis_options import redis_options

    client = _clients.get(settings.REDIS_URL)
    if client is None:
        client = _clients[settings.REDIS_URL] = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2, **redis_options())
    return client


def deployment_cache_connect() -> None:
    """Connect the receivers (from the app's ready())."""
    from django.db.models.signals import post_delete, post_save

    from accounts.models import Agent, Deployment

    for model in (Agent, Deployment):
        post_save.connect(deployments_changed, sender=model, dispatch_uid=f"deployment-cache-save-{model.__name__}")
        post_delete.connect(deployments_changed, sender=model, dispatch_uid=f"deployment-cache-delete-{model.__name__}")
