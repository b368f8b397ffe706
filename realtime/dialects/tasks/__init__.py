"""Task handlers of the tasks dialect (seed 001). Each handler takes the task object and a TaskContext
and returns the result fields; the runner adds ``taskType`` and ``taskUUID``. A handler refuses with
TaskFailed (a stable code, and the offending parameter when there is one)."""
from __future__ import annotations

from dataclasses import dataclass

from realtime.gateway.auth import ConnectionAuth


class TaskFailed(Exception):
    def __init__(self, code: str, message: str, *, parameter: str | None = None):
        self.code = code
        self.message = message
        self.parameter = parameter
        super().__init__(message)


@dataclass(frozen=True)
class TaskContext:
    auth: ConnectionAuth
    public_base_url: str  # where this gateway's HTTP side is reachable by the client (image URLs)
    # The gateway's id of the connection's session (its record): the task's usage and timeline go under
    # it, so the Sessions page and the inspector show one session with all three.
    session_id: str
