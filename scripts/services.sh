#!/usr/bin/env bash
# Make sure the PostgreSQL and Redis the tests use are up: start them if installed but stopped.
# Never skip silently: if one cannot be reached, fail with a clear message.
set -euo pipefail

pg_up() { (echo > /dev/tcp/127.0.0.1/5432) 2>/dev/null; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
    echo "Starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi
if ! redis_up; then
  if command -v redis-server >/dev/null; then
    echo "Starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  fi
fi
for _ in $(seq 1 50); do pg_up && redis_up && break; sleep 0.2; done
pg_up || { echo "PostgreSQL is not reachable at 127.0.0.1:5432 and could not be started" >&2; exit 1; }
redis_up || { echo "Redis is not reachable at 127.0.0.1:6379 and could not be started" >&2; exit 1; }
