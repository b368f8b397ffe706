"""Fault-test harness: a whole fleet on loopback, owned by one test.

``Cluster`` starts, on free 127.0.0.1 ports and in temporary directories, its own redis-server, its
own PostgreSQL cluster (``initdb`` + ``pg_ctl``; migrated with ``manage.py migrate``), N uvicorn
gateway processes with the README's production flags, and haproxy with the shipped
``deploy/haproxy.cfg``. Every part can be stopped, started again (same port), SIGSTOPped, resumed
and SIGKILLed by the test. Every wait is bounded; everything is torn down when the ``with`` block
(or the ``cluster_factory`` fixture) ends, and at interpreter exit as a last resort.

    def test_x(cluster_factory):
        fleet = cluster_factory(gateways=2)
        key = fleet.create_key()
        fleet.redis.stop(); ...; fleet.redis.start()
        fleet.gateways[0].kill()
        fleet.postgres.pause(); ...; fleet.postgres.resume()

Nothing here touches the shared servers on 5432/6379.
"""
from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.ports import free_port

BASE_DIR = Path(__file__).resolve().parents[2]
HAPROXY_CONFIG = BASE_DIR / "deploy" / "haproxy.cfg"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

# The README's production command line (one process per port).
UVICORN_FLAGS = ["--loop", "uvloop", "--http", "httptools", "--ws", "realtime.lib.frames:ServerWebSocketProtocol",
                 "--ws-per-message-deflate", "false", "--lifespan", "off", "--no-access-log"]

_live: list[Any] = []  # everything started and not yet stopped: torn down at exit if a test forgot


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, log: Callable[[], str] | None = None) -> None:
    """Poll ``check`` with a deadline (child processes give no event to await)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    detail = f"\n{log()[-4000:]}" if log else ""
    raise TimeoutError(f"{what} not within {timeout:.0f} s{detail}")


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (read from /proc), deepest last."""
    parents: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    found, queue = [], [pid]
    while queue:
        for child in parents.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


class Process:
    """One child process with a log file; the fault-injection verbs every part shares."""

    name = "process"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.process: subprocess.Popen | None = None
        self.port = free_port()
        self.log_path = workdir / f"{self.name}-{self.port}.log"

    # subclasses: command(), env(), ready()
    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def ready(self) -> bool:
        return port_open(self.port)

    def user(self) -> str | None:
        return None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = START_TIMEOUT) -> None:
        assert not self.running, f"{self.name} already running"
        wait_until(lambda: not port_open(self.port), timeout=STOP_TIMEOUT, what=f"{self.name} port {self.port} free")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), cwd=BASE_DIR, env=self.env(), stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True, user=self.user())
        _live.append(self)

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            return self.ready()

        wait_until(up, timeout=timeout, what=f"{self.name} ready on {self.port}", log=self.log)

    def signal(self, signum: int) -> None:
        if self.running:
            os.kill(self.pid, signum)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.process is None:
            return None
        self.resume()
        self.signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.process.returncode
        self._forget()
        return code

    def kill(self) -> None:
        """SIGKILL: no chance to clean up (crash)."""
        if self.process is None:
            return
        for pid in [self.pid, *_children(self.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=STOP_TIMEOUT)
        self._forget()

    def pause(self) -> None:
        """SIGSTOP the process and its children (a hang: sockets stay open, nothing answers)."""
        for pid in [self.pid, *_children(self.pid)]:
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.running:
            for pid in [self.pid, *_children(self.pid)]:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass

    def _forget(self) -> None:
        if self in _live:
            _live.remove(self)


class RedisServer(Process):
    name = "redis"

    def command(self) -> list[str]:
        return [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "no"]

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


def _postgres_bin(tool: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    if not found:
        pytest.skip(f"PostgreSQL's {tool} is not installed")
    return found[-1]


def _postgres_user() -> str | None:
    """initdb and postgres refuse to run as root: run them as the postgres user then."""
    return "postgres" if os.geteuid() == 0 else None


_template: dict[str, Path] = {}  # a migrated, stopped data directory, copied for each cluster


class PostgresCluster(Process):
    name = "postgres"
    database = "switchboard"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        # Outside pytest's tmp_path: the postgres user must be able to reach it.
        self.root = Path(tempfile.mkdtemp(prefix="sb-pg-"))
        os.chmod(self.root, 0o755)
        self.datadir = self.root / "data"
        self._owner()

    def _owner(self) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def command(self) -> list[str]:
        return [_postgres_bin("postgres"), "-D", str(self.datadir), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=200", "-c", "shared_buffers=32MB"]

    def user(self) -> str | None:
        return _postgres_user()

    def ready(self) -> bool:
        if not port_open(self.port):
            return False
        try:
            self.sql("select 1", database="postgres")
            return True
        except Exception:
            return False

    def initialize(self, migrate_env: dict[str, str]) -> None:
        """A fresh data directory with the migrated ``switchboard`` database (copied from a template
        made once per test run: initdb + migrate costs seconds)."""
        if "dir" not in _template:
            template = Path(tempfile.mkdtemp(prefix="sb-pg-template-"))
            os.chmod(template, 0o755)
            if os.geteuid() == 0:
                entry = pwd.getpwnam("postgres")
                os.chown(template, entry.pw_uid, entry.pw_gid)
            data = template / "data"
            subprocess.run([_postgres_bin("initdb"), "-D", str(data), "-U", "postgres",
                            "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"],
                           check=True, capture_output=True, timeout=START_TIMEOUT, user=_postgres_user())
            saved, self.datadir = self.datadir, data
            self.start()
            self.sql(f"create database {self.database}", database="postgres")
            env = {**migrate_env, "DATABASE_URL": self.url()}
            done = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=BASE_DIR, env=env,
                                  capture_output=True, text=True, timeout=240)
            if done.returncode:
                raise RuntimeError(f"migrate failed:\n{done.stdout}\n{done.stderr}")
            self.stop()
            self.datadir = saved
            _template["dir"] = data
            atexit.register(shutil.rmtree, template, True)
        subprocess.run(["cp", "-a", str(_template["dir"]), str(self.datadir)], check=True, timeout=START_TIMEOUT)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        # SIGINT is PostgreSQL's "fast" shutdown: open sessions are disconnected, no recovery needed.
        if self.process is None:
            return None
        self.resume()
        self.signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.process.returncode
        self._forget()
        return code

    def url(self, database: str | None = None) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database or self.database}"

    def sql(self, query: str, params: tuple = (), *, database: str | None = None) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class Gateway(Process):
    """One uvicorn process serving project.asgi with the README's production flags."""

    name = "gateway"

    def __init__(self, workdir: Path, env: dict[str, str], index: int) -> None:
        self.index = index
        self.name = f"gateway{index}"
        super().__init__(workdir)
        self._env = env

    def command(self) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1",
                "--port", str(self.port), *UVICORN_FLAGS]

    def env(self) -> dict[str, str]:
        return {name: value.replace("{port}", str(self.port)) for name, value in self._env.items()}

    def ready(self) -> bool:
        return port_open(self.port)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


class Haproxy(Process):
    """haproxy in the foreground with the shipped configuration; backends come from the environment."""

    name = "haproxy"

    def __init__(self, workdir: Path, gateways: list[Gateway], config: Path = HAPROXY_CONFIG) -> None:
        super().__init__(workdir)
        self.gateways = gateways
        self.config = config

    def command(self) -> list[str]:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not os.path.exists(binary):
            pytest.skip("haproxy is not installed (make test installs Debian's haproxy)")
        return [binary, "-db", "-f", str(self.config)]

    def env(self) -> dict[str, str]:
        backends = [f"127.0.0.1:{gateway.port}" for gateway in self.gateways]
        env = dict(os.environ, SWITCHBOARD_LISTEN=f"127.0.0.1:{self.port}")
        # The shipped configuration names two gateways; with one, both names point at it.
        for number in (1, 2):
            env[f"SWITCHBOARD_GATEWAY_{number}"] = backends[min(number, len(backends)) - 1]
        return env

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


class EchoUpstream(Process):
    """bench/echo_upstream.py: a realtime agent that echoes every client event (session.created first)."""

    name = "echo-upstream"

    def command(self) -> list[str]:
        return [sys.executable, str(BASE_DIR / "bench" / "echo_upstream.py"), "--port", str(self.port)]

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"


_counter = itertools.count(1)


class Cluster:
    """Redis + PostgreSQL + N gateways (+ haproxy) for one test; a context manager."""

    SECRET_KEY = "fleet-test-secret-key-" + "x" * 40

    def __init__(self, workdir: Path, *, gateways: int = 2, haproxy: bool = True,
                 env: dict[str, str] | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(self.workdir)
        self.postgres = PostgresCluster(self.workdir)
        self.prefix = f"sbfleet{os.getpid()}x{next(_counter)}"
        self.extra_env = dict(env or {})
        self.gateways = [Gateway(self.workdir, {}, index) for index in range(1, gateways + 1)]
        self.haproxy = Haproxy(self.workdir, self.gateways) if haproxy else None
        self._keys = itertools.count(1)
        self.extras: list[Process] = []

    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("TEST_DATABASE_NAME", "PYTEST_CURRENT_TEST", "PYTEST_XDIST_WORKER"):
            env.pop(name, None)
        env.update(
            DJANGO_SETTINGS_MODULE="project.settings",
            PYTHONUNBUFFERED="1",
            SECRET_KEY=self.SECRET_KEY,
            DEBUG="false",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            SECURE_SSL_REDIRECT="false",
            SECURE_COOKIES="false",
            SECURE_HSTS_SECONDS="0",
            DATABASE_URL=self.postgres.url(),
            REDIS_URL=self.redis.url(0),
            REDIS_PREFIX=self.prefix,
            MEDIA_ROOT=str(self.workdir / "media"),
            # The echo upstream listens on loopback, which the outbound policy refuses by default.
            OUTBOUND_ALLOWED_NETWORKS="127.0.0.0/8,::1/128",
        )
        return env

    def start(self) -> Cluster:
        try:
            self.redis.start()
            self.postgres.initialize(self.base_env())
            self.postgres.start()
            env = {**self.base_env(), **self.extra_env}
            for gateway in self.gateways:
                gateway._env = env
                gateway.start()
            if self.haproxy is not None:
                self.haproxy.start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        parts: list[Process] = [*([self.haproxy] if self.haproxy else []), *self.gateways, *self.extras,
                                self.postgres, self.redis]
        for part in parts:
            try:
                part.stop()
            except Exception:
                part.kill()
        self.postgres.cleanup()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- data --------------------------------------------------------------------------------------

    def manage(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=self.base_env(),
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def create_key(self, project: str = "fleet", owner: str = "owner@example.com") -> str:
        """A new development key of ``project`` (created with its owner when absent)."""
        return self.manage("createkey", "--project", project, "--env", "development",
                           "--name", f"key {next(self._keys)}-{uuid.uuid4().hex[:6]}", "--owner", owner).strip()

    def custom_deployment(self, url: str, project: str = "fleet", task_upstream_url: str = "") -> None:
        """Point ``project``'s development environment at a custom upstream URL (its default deployment),
        with ``task_upstream_url`` for the tasks dialect's model-backed tasks."""
        code = (
            "from accounts.models import EnvironmentKind, Project\n"
            "from realtime.agents.services import agent_create, deployment_create\n"
            f"project = Project.objects.get(slug={project!r})\n"
            "environment = project.environments.get(kind=EnvironmentKind.DEVELOPMENT)\n"
            f"agent = agent_create(project=project, data={{'name': 'Echo', 'provider': 'custom', 'url': {url!r}}})\n"
            "deployment_create(project=project, environment=environment, agent=agent, name='Echo dep', is_default=True,"
            f" task_upstream_url={task_upstream_url!r})\n"
        )
        self.manage("shell", "-c", code)

    def echo_upstream(self) -> EchoUpstream:
        """Start an echo upstream for this cluster (stopped with it)."""
        upstream = EchoUpstream(self.workdir)
        upstream.start()
        self.extras.append(upstream)
        return upstream

    @property
    def entry(self) -> Process:
        """Where clients connect: haproxy when there is one, else the first gateway."""
        return self.haproxy if self.haproxy is not None else self.gateways[0]


@atexit.register
def _teardown_leftovers() -> None:
    for part in list(_live):
        try:
            part.kill()
        except Exception:
            pass


@pytest.fixture
def cluster_factory(tmp_path) -> Iterator[Callable[..., Cluster]]:
    """``cluster_factory(gateways=2, haproxy=True, env={...})`` starts a Cluster; all are closed at
    teardown, whatever the test did to them."""
    clusters: list[Cluster] = []

    def start(**options: Any) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster{len(clusters) + 1}", **options)
        clusters.append(cluster)
        return cluster.start()

    yield start
    for cluster in clusters:
        cluster.close()
