"""A private PostgreSQL cluster for fault tests: initdb + pg_ctl in a temporary directory on a free
loopback port, so a test can stop and start "the database" without touching the shared server.
(A minimal stand-in until the fleet harness, tests/support/cluster.py, lands.)

Run as the ``postgres`` user when the tests run as root (PostgreSQL refuses root). The cluster trusts
loopback connections as ``postgres``; ``migrate`` gives it the project's schema and ``django`` runs code
against it in a child process (the test process itself stays on pytest-django's database).
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def _bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise RuntimeError(f"{name} not found: install PostgreSQL's server binaries")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    def __init__(self, database: str = "fault"):
        # Its own directory: pytest's tmp_path is private to root, where the postgres user cannot go.
        self.directory = Path(tempfile.mkdtemp(prefix="sb-pg-"))
        self.data = self.directory / "data"
        self.sockets = self.directory / "sockets"
        self.log = self.directory / "postgres.log"
        self.port = _free_port()
        self.database = database
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        command = list(argv)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:2])} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done

    def init(self) -> PostgresCluster:
        self.sockets.mkdir(exist_ok=True)
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            for path in (self.directory, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._run(_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync", timeout=120)
        self.start()
        self._run(_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", self.database)
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start",
                  timeout=90)

    def stop(self) -> None:
        """A fast shutdown: connections are cut, new ones are refused until ``start``."""
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop", timeout=90)

    def destroy(self) -> None:
        try:
            self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        except RuntimeError:
            pass  # not running
        shutil.rmtree(self.directory, ignore_errors=True)

    def env(self) -> dict[str, str]:
        env = os.environ.copy()
        env.update(DATABASE_URL=self.url, DJANGO_SETTINGS_MODULE="project.settings")
        env.pop("TEST_DATABASE_NAME", None)
        return env

    def migrate(self) -> None:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=BASE_DIR, env=self.env(),
                       check=True, capture_output=True, timeout=300)

    def django(self, code: str, timeout: float = 120):
        """Run ``code`` with Django set up on this cluster in a child process; it may ``emit(obj)`` one
        JSON-able result, returned here."""
        prelude = ("import django, json, sys\ndjango.setup()\n"
                   "def emit(obj):\n    print('RESULT ' + json.dumps(obj, default=str))\n")
        done = subprocess.run([sys.executable, "-c", prelude + code], cwd=BASE_DIR, env=self.env(),
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"django code failed:\n{done.stderr[-4000:]}")
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        return json.loads(lines[-1][len("RESULT "):]) if lines else None

    def wait_accepting(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)  # a child process's readiness: no event to await
        raise RuntimeError("the private PostgreSQL cluster did not come up")
