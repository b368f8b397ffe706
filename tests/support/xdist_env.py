"""Each pytest-xdist worker gets a Redis namespace of its own (loaded with ``-p`` from pytest.ini).

pytest-django gives every worker its own test database (``test_test_gw0``, ``test_test_gw1``), but
database ids start at 1 in each, so per-key Redis state (rate-limit slots, leases, the deployment
cache's generation) would collide across workers, and ``cache.clear()`` (Django's RedisCache) empties
the whole Redis database. So worker ``gwN`` uses Redis database ``(db - N) mod 16`` of the given
REDIS_URL and the prefix ``<REDIS_PREFIX>-gwN``. This module runs when pytest imports its plugins,
before pytest-django reads the Django settings; server processes the tests start inherit the
environment. Without xdist (no PYTEST_XDIST_WORKER) nothing changes.
"""
from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

REDIS_DATABASES = 16  # redis-server's default `databases`


def worker_redis_url(url: str, worker: int) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or worker == 0:
        return url
    path = parts.path.strip("/")
    db = int(path) if path.isdigit() else 0
    return urlunsplit(parts._replace(path=f"/{(db - worker) % REDIS_DATABASES}"))


def _apply() -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return
    os.environ["REDIS_PREFIX"] = f"{os.environ.get('REDIS_PREFIX', 'switchboard')}-{worker}"
    if os.environ.get("REDIS_URL"):
        os.environ["REDIS_URL"] = worker_redis_url(os.environ["REDIS_URL"], int(worker[2:]))


_apply()
