# Two commands on a fresh machine: `make run` and `make test`. Everything they need is installed here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt package.json package-lock.json 2>/dev/null | sha1sum | cut -c1-12)
HOST ?= 127.0.0.1
PORT ?= 8000
TEST_PG_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

# make run serves with uvicorn, the production server (README.md, "Running several processes"): frames
# and messages up to 16 MiB reach the application, which answers over-size ones with frame_too_large.
SERVER_ARGS := --loop uvloop --http httptools --ws realtime.lib.frames:ServerWebSocketProtocol --ws-per-message-deflate false --ws-max-size 16777216 --lifespan off

.PHONY: install run test lint test-postgres test-sqlite services chromium haproxy bench clean

$(STAMP): requirements.txt $(wildcard package.json package-lock.json)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@if [ -f package-lock.json ]; then npm ci --silent --no-audit --no-fund; fi
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	@echo "Switchboard is serving at http://$(HOST):$(PORT)/"
	$(VENV)/bin/uvicorn project.asgi:application --host $(HOST) --port $(PORT) $(SERVER_ARGS)

services:
	@bash scripts/services.sh

chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		echo "Installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

# The fleet fault tests (tests/support/cluster.py) put Debian's haproxy in front of the gateways.
haproxy:
	@if ! command -v haproxy >/dev/null && [ ! -x /usr/sbin/haproxy ]; then \
		echo "Installing Debian's haproxy for the fleet tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; \
	fi

# Lint and types, the whole suite on PostgreSQL and Redis, then the unit suite again on the embedded SQLite default.
test: install services chromium haproxy lint test-postgres test-sqlite

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Both runs use two pytest-xdist workers (tests/conftest.py: which tests share a worker, and why; each worker
# has its own test database and Redis namespace, tests/support/xdist_env.py). TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
XDIST_ARGS = $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder)

test-postgres:
	DATABASE_URL=$(TEST_PG_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) -m pytest -p no:cacheprovider $(XDIST_ARGS) $(PYTEST_ARGS)

test-sqlite:
	DATABASE_URL=sqlite:///$(CURDIR)/.venv/unit.sqlite3 $(PY) -m pytest -p no:cacheprovider -m unit $(XDIST_ARGS) $(PYTEST_ARGS)

bench: install services haproxy
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) staticfiles node_modules
