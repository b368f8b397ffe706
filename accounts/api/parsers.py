"""JSON request bodies with a bound on nesting: Python's parser recurses per level, so a body of
100,000 brackets raised RecursionError (a 500), and deep but parseable bodies recurse again in
validators. Anything nested deeper than MAX_JSON_DEPTH is a 400."""
from __future__ import annotations

import json
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_JSON_DEPTH = 64


class JsonTooDeep(ValueError):
    pass


def _depth_ok(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def json_loads_bounded(data: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads, refusing (JsonTooDeep, a ValueError) anything nested deeper than ``max_depth``."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise JsonTooDeep(f"The JSON is nested deeper than {max_depth} levels.") from None
    if not _depth_ok(value, max_depth):
        raise JsonTooDeep(f"The JSON is nested deeper than {max_depth} levels.")
    return value


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", "utf-8")
        try:
            return json_loads_bounded(stream.read().decode(encoding))
        except JsonTooDeep as exc:
            raise ParseError(str(exc)) from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
