"""Parsing of task parameters shared by the handlers: required strings, choices, base64 payloads."""
from __future__ import annotations

import base64
import binascii

from django.conf import settings

from realtime.dialects.tasks import TaskFailed


def param_str(task: dict, name: str, *, max_chars: int | None = None, required: bool = True) -> str | None:
    value = task.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise TaskFailed("invalid_parameter", f"{name} must be a non-empty string.", parameter=name)
    if max_chars is not None and len(value) > max_chars:
        raise TaskFailed("invalid_parameter", f"{name} is {len(value)} characters; the limit is {max_chars}.",
                         parameter=name)
    return value


def param_choice(task: dict, name: str, choices: dict, default):
    """``choices`` maps accepted values (case-insensitive for strings) to what the handler uses."""
    value = task.get(name, default)
    key = value.upper() if isinstance(value, str) else value
    lookup = {(k.upper() if isinstance(k, str) else k): v for k, v in choices.items()}
    if isinstance(value, bool) or key not in lookup:
        accepted = ", ".join(str(k) for k in choices)
        raise TaskFailed("invalid_parameter", f"{name} must be one of {accepted}.", parameter=name)
    return lookup[key]


def param_base64(task: dict, name: str) -> bytes:
    """Plain base64 or a ``data:<type>;base64,`` URI, at most TASKS_MAX_INPUT_BYTES once decoded."""
    value = task.get(name)
    if not isinstance(value, str) or not value:
        raise TaskFailed("invalid_parameter", f"{name} must be base64 data or a data URI.", parameter=name)
    if value.startswith("data:"):
        header, _, value = value.partition(",")
        if not header.endswith(";base64"):
            raise TaskFailed("invalid_parameter", f"{name}: only base64 data URIs are accepted.", parameter=name)
    limit = settings.TASKS_MAX_INPUT_BYTES
    if len(value) * 3 // 4 > limit + 3:
        raise TaskFailed("input_too_large", f"{name} is larger than the {limit} byte limit.", parameter=name)
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise TaskFailed("invalid_base64", f"{name} is not valid base64.", parameter=name) from None
    if not data:
        raise TaskFailed("invalid_parameter", f"{name} is empty.", parameter=name)
    return data
