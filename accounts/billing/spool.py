"""The usage spool: batches a process could not write to the ledger, kept on disk until it can.

One append-only file of JSON lines per process, ``usage-<host>-<pid>-<random>.jsonl`` in
BILLING_SPOOL_DIR, created on the first failed write and fsynced on every append. The process holds an
exclusive flock on it for as long as it lives; a file nobody holds a lock on belongs to a process that
ended (a crash, a kill, a restart), and any process of the same installation adopts it: copies its
batches into its own spool (fsynced), then removes it. Batches carry their idempotency keys, so a
batch that reaches the ledger twice (written, then replayed because the process died before it
removed it from the spool) is counted once (accounts.billing.ledger).

Called from the usage writer's own thread only (accounts.billing.writer); nothing here is async.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import IO

from accounts.billing.ledger import UsageBatch

logger = logging.getLogger(__name__)

PREFIX = "usage-"
SUFFIX = ".jsonl"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(handle: IO[bytes], path: Path) -> list[UsageBatch]:
    """The batches of a spool file; a torn last line (the process died while appending) is skipped."""
    handle.seek(0)
    batches = []
    for number, line in enumerate(handle.read().splitlines(), 1):
        if not line.strip():
            continue
        try:
            batches.append(UsageBatch.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            logger.error("usage spool %s: line %d is not a batch; skipped", path.name, number)
    return batches


class UsageSpool:
    def __init__(self, directory: str | os.PathLike | None = None):
        self._directory = Path(directory) if directory is not None else None
        self.path: Path | None = None
        self._handle: IO[bytes] | None = None

    @property
    def directory(self) -> Path:
        """The given directory, else BILLING_SPOOL_DIR as it is now (read late: tests set it per run)."""
        if self._directory is not None:
            return self._directory
        from django.conf import settings

        return Path(settings.BILLING_SPOOL_DIR)

    def _open(self) -> IO[bytes]:
        if self._handle is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SUFFIX}"
            path = self.directory / name
            handle = open(path, "ab+")  # noqa: SIM115 (held open, and locked, for the process's life)
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            _fsync_dir(self.directory)
            self.path, self._handle = path, handle
        return self._handle

    def append(self, batches: list[UsageBatch]) -> None:
        """Durable on return (written and fsynced)."""
        if not batches:
            return
        handle = self._open()
        handle.seek(0, os.SEEK_END)
        handle.write(b"".join(json.dumps(batch.to_json(), separators=(",", ":")).encode() + b"\n"
                              for batch in batches))
        handle.flush()
        os.fsync(handle.fileno())

    def replace(self, batches: list[UsageBatch]) -> None:
        """Keep only ``batches`` (the ones still unwritten); the file goes when none are left."""
        if not batches:
            self.clear()
            return
        old_handle, old_path = self._handle, self.path
        self._handle = self.path = None
        self.append(batches)  # a new locked file, durable before the old one goes
        if old_handle is not None and old_path is not None:
            old_path.unlink(missing_ok=True)
            old_handle.close()

    def clear(self) -> None:
        if self._handle is not None and self.path is not None:
            self.path.unlink(missing_ok=True)  # removed while still locked: no one adopts it half-read
            self._handle.close()
            _fsync_dir(self.directory)
        self._handle = self.path = None

    def adopt_orphans(self) -> list[UsageBatch]:
        """Batches of spool files whose process is gone, now in this process's spool (durably)."""
        if not self.directory.is_dir():
            return []
        adopted: list[UsageBatch] = []
        for path in sorted(self.directory.glob(f"{PREFIX}*{SUFFIX}")):
            if path == self.path:
                continue
            try:
                handle = open(path, "rb")  # noqa: SIM115 (closed below, after its lock is used)
            except FileNotFoundError:  # adopted by another process meanwhile
                continue
            try:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive
                if not path.exists():
                    continue  # removed by its adopter between our open and our lock
                batches = _read(handle, path)
                self.append(batches)
                path.unlink()
                adopted.extend(batches)
                logger.warning("usage spool %s of an ended process adopted: %d batches to write", path.name,
                               len(batches))
            finally:
                handle.close()
        return adopted

    def reject(self, batches: list[UsageBatch]) -> None:
        """Batches the database refuses for what they hold (not for being away): kept beside the spool
        for an operator, never dropped."""
        if not batches:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"rejected-{socket.gethostname()}-{os.getpid()}.jsonl.txt"
        with open(path, "ab") as handle:
            handle.write(b"".join(json.dumps(batch.to_json()).encode() + b"\n" for batch in batches))
            handle.flush()
            os.fsync(handle.fileno())
