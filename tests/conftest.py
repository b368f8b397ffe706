"""Shared fixtures: owner / member / outsider tenants, and real daphne server processes.

Live tests (marker ``live``) run real daphne processes against the same test database, so they use
``transactional_db``: data must be committed for another process to see it.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.db import connection

from accounts.billing.budgets import budget_cache
from accounts.billing.prices import price_cache
from accounts.keys import key_cache
from accounts.models import EnvironmentKind, Role, User
from accounts.services import api_key_create, project_create
from tests.support.cluster import cluster_factory  # noqa: F401  (the fault-test harness's fixture)
from tests.support.ports import free_port

BASE_DIR = Path(__file__).resolve().parent.parent
ARTIFACTS = BASE_DIR / "test-artifacts"


# --- Under pytest-xdist (make test: -n 2 --dist loadgroup --no-loadscope-reorder) --------------------
# Two xdist_group work units each run on one worker, in collection order:
#   "long-waits": the 3-minute silence test and the fleet fault tests (private clusters, outages):
#                 mostly waiting, and never two private clusters at once;
#   "voice":      speech recognition and synthesis (the local agent, the browser's fake microphone):
#                 CPU-heavy, never two recognisers at once.
# They are the first work handed out after the database tests, "long-waits" first: a worker that takes
# a unit of several tests is sent nothing more until it is nearly done, so the other worker takes
# "voice", and the voice tests run beside the silence test's waiting rather than beside each other.
XDIST_GROUPS_FIRST = ("long-waits", "voice")


def _xdist_group(item: pytest.Item) -> str | None:
    mark = item.get_closest_marker("xdist_group")
    if mark is None:
        return None
    return mark.args[0] if mark.args else mark.kwargs.get("name")


def _transactional(item: pytest.Item) -> bool:
    mark = item.get_closest_marker("django_db")
    if mark is not None and (mark.kwargs.get("transaction") or mark.kwargs.get("reset_sequences")):
        return True
    return bool({"transactional_db", "live_server"} & set(getattr(item, "fixturenames", ())))


@pytest.hookimpl(trylast=True)  # after pytest-django's order: database tests, transactional ones, the rest
def pytest_collection_modifyitems(config, items):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # a serial run keeps pytest-django's order
    grouped = [item for name in XDIST_GROUPS_FIRST for item in items if _xdist_group(item) == name]
    if not grouped:
        return
    rest = [item for item in items if _xdist_group(item) not in XDIST_GROUPS_FIRST]
    # Before the first transactional test: a worker runs every plain database test (which may rely on
    # data the migrations wrote) before any test that empties the tables.
    first = next((n for n, item in enumerate(rest) if _transactional(item)), len(rest))
    items[:] = rest[:first] + grouped + rest[first:]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Full-strength PBKDF2 costs ~1 s a user on this machine; hashing strength is not under test here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# Fake upstreams in the tests listen on loopback, which the outbound policy refuses by default. The
# SSRF tests (tests/test_outbound_policy*.py) take the allowance away again.
TEST_ALLOWED_NETWORKS = "127.0.0.0/8,::1/128"
# Child processes the tests start (servers, manage.py, scripts) inherit it; env={...} may override.
os.environ.setdefault("OUTBOUND_ALLOWED_NETWORKS", TEST_ALLOWED_NETWORKS)


@pytest.fixture(autouse=True)
def _loopback_upstreams_allowed(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = TEST_ALLOWED_NETWORKS.split(",")


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    from realtime.agents.deployment_cache import deployment_cache_clear
    from realtime.gateway.records import records_discard

    key_cache.clear()
    deployment_cache_clear()  # SQLite reuses ids after a rollback: a cached deployment could be another test's
    records_discard()  # session records an in-process server noted in an earlier test
    yield
    key_cache.clear()
    deployment_cache_clear()


@pytest.fixture(autouse=True)
def _fresh_billing_caches():
    """Per-process copies of price lists and budget state: each test starts from the database."""
    price_cache.clear()
    budget_cache.clear()
    yield
    price_cache.clear()
    budget_cache.clear()


@pytest.fixture(autouse=True, scope="session")
def _usage_spool_dir(tmp_path_factory):
    """This test process's usage spool (accounts.billing.spool), apart from any real installation's."""
    from django.conf import settings

    settings.BILLING_SPOOL_DIR = str(tmp_path_factory.mktemp("usage-spool"))


def make_user(email: str, password: str = "correct horse battery staple") -> User:
    return User.objects.create_user(email=email, password=password)


@pytest.fixture
def owner(db) -> User:
    return make_user("owner@example.com")


@pytest.fixture
def member(db) -> User:
    return make_user("member@example.com")


@pytest.fixture
def outsider(db) -> User:
    return make_user("outsider@example.com")


@pytest.fixture
def project(owner, member):
    """A project owned by ``owner`` with ``member`` as a plain member. ``outsider`` has a project of
    their own (``other_project``) and no access to this one."""
    from accounts.models import Membership

    proj = project_create(name="Acme Voice", owner=owner)
    Membership.objects.create(user=member, project=proj, role=Role.MEMBER)
    return proj


@pytest.fixture
def other_project(outsider):
    return project_create(name="Other Corp", owner=outsider)


@pytest.fixture
def dev_key(project, owner):
    """(ApiKey row, raw secret) for the project's development environment."""
    env = project.environments.get(kind=EnvironmentKind.DEVELOPMENT)
    return api_key_create(project=project, environment=env, name="dev key", created_by=owner)


@pytest.fixture
def other_key(other_project, outsider):
    env = other_project.environments.get(kind=EnvironmentKind.DEVELOPMENT)
    return api_key_create(project=other_project, environment=env, name="other key", created_by=outsider)


# --- Real server processes --------------------------------------------------------------------------

def database_url_for_subprocess() -> str:
    """The URL of the test database pytest-django created, for a server process to share."""
    s = connection.settings_dict
    if s["ENGINE"] != "django.db.backends.postgresql":
        pytest.fail("live tests need PostgreSQL: run them with DATABASE_URL=postgres://...")
    user = s.get("USER") or ""
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


@dataclass
class ServerProcess:
    process: subprocess.Popen
    port: int
    log_path: Path
    env: dict = field(repr=False, default_factory=dict)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up (crash simulation)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_for_port(port: int, process: subprocess.Popen, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # readiness poll of a child process; there is no event to await
    raise RuntimeError(f"server did not listen on {port} within {timeout}s:\n{log_path.read_text(errors='replace')}")


@pytest.fixture
def server_factory(transactional_db, tmp_path):
    """Start real daphne processes serving project.asgi on loopback, sharing the test database and
    the test Redis. ``start(env={...})`` returns a ServerProcess; all are stopped at teardown."""
    from django.conf import settings

    started: list[ServerProcess] = []

    def start(env: dict | None = None, app: str = "project.asgi:application", argv: list[str] | None = None) -> ServerProcess:
        port = free_port()
        child_env = os.environ.copy()
        child_env.update(
            DATABASE_URL=database_url_for_subprocess(),
            SECRET_KEY=settings.SECRET_KEY,
            DJANGO_SETTINGS_MODULE="project.settings",
            PYTHONUNBUFFERED="1",
        )
        child_env.pop("TEST_DATABASE_NAME", None)
        child_env.setdefault("OUTBOUND_ALLOWED_NETWORKS", TEST_ALLOWED_NETWORKS)  # env={...} may override
        child_env["BILLING_SPOOL_DIR"] = str(tmp_path / "usage-spool")  # each test's servers share one
        # "{port}" in a value becomes the server's port (e.g. REALTIME_ALLOWED_ORIGINS for a browser).
        child_env.update({name: value.replace("{port}", str(port)) for name, value in (env or {}).items()})
        log_path = tmp_path / f"server-{port}.log"
        # The daphne command README.md documents: autobahn's 1 MiB default would drop larger frames.
        command = argv or [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                           "--websocket-max-message-size", "16777216", "--websocket-max-frame-size", "16777216", app]
        command = [part.replace("{port}", str(port)) for part in command]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, cwd=BASE_DIR, env=child_env, stdout=log, stderr=subprocess.STDOUT)
        server = ServerProcess(process=process, port=port, log_path=log_path, env=child_env)
        started.append(server)
        wait_for_port(port, process, log_path)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
