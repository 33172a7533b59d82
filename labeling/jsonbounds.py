"""JSON parsing with a bound on nesting depth, for every body and file line that comes from a user.

Python's parser recurses once per nesting level: ``[`` x 100,000 raises ``RecursionError`` (a 500 in a
view, a crashed import in a worker), and a value nested a few hundred levels deep parses but then
costs every later walk over it (validation, jsonb encoding) a deep recursion of its own. Nothing the
service stores needs more than a handful of levels, so anything past ``MAX_JSON_DEPTH`` is refused as
malformed input.
"""

from __future__ import annotations

import json
from typing import Any

MAX_JSON_DEPTH = 64


class JSONTooDeepError(ValueError):
    """The JSON text nests arrays and objects deeper than allowed."""


def nesting_depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a parsed JSON value nests containers more than ``limit`` levels deep (iterative walk)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def too_deep_message(limit: int = MAX_JSON_DEPTH) -> str:
    return f"arrays and objects nested more than {limit} levels deep"


def check_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> Any:
    """``value`` itself, or ``JSONTooDeepError`` when it nests deeper than ``limit``."""
    if nesting_depth_exceeds(value, limit):
        raise JSONTooDeepError(too_deep_message(limit))
    return value


def loads(text: str | bytes, *, limit: int = MAX_JSON_DEPTH, **kwargs: Any) -> Any:
    """``json.loads`` that raises ``JSONTooDeepError`` (a ``ValueError``) instead of recursing without end."""
    try:
        value = json.loads(text, **kwargs)
    except RecursionError:
        raise JSONTooDeepError(too_deep_message(limit)) from None
    return check_depth(value, limit)
