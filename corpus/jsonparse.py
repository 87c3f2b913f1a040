"""Strict JSON for corpus files: what :func:`json.loads` accepts, minus what no corpus may hold.

Python's parser takes ``NaN``, ``Infinity`` and ``1e999`` (as non-finite floats), lone surrogate
escapes such as ``"\\ud800"`` (strings that cannot be written back as UTF-8), and nests until the
interpreter's recursion limit, where it raises :class:`RecursionError`. :func:`parse_json` turns
each of these, and every syntax error, into one :class:`JsonProblem` that names the line (when the
parser knows it) and the field (a path such as ``emotions[3].valence``).
"""
from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

#: Deepest nesting of arrays and objects a corpus file may use (the deepest legitimate one uses 5).
MAX_DEPTH = 64
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


class JsonProblem(Exception):
    """Why a text is not acceptable corpus JSON: a one-line ``message``, and where when known."""

    def __init__(self, message: str, line: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.line, self.field = message, line, field


def _non_finite(name: str) -> float:
    return float(name.replace("Infinity", "inf"))


def _loads(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_non_finite)
    except json.JSONDecodeError as exc:
        raise JsonProblem(f"invalid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None
    except RecursionError:
        raise JsonProblem(f"invalid JSON: nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # an integer longer than the interpreter converts
        if "digits" in str(exc):
            raise JsonProblem(f"invalid JSON: a number with more than {sys.get_int_max_str_digits()} digits"
                              ) from None
        raise JsonProblem(f"invalid JSON: {exc}") from None


def _join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)


def unsupported_value(value: Any) -> JsonProblem | None:
    """The first value no corpus may hold (non-finite number, lone surrogate, too deep), with its path.

    Walks the parsed document without recursion, so it works at any depth.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= MAX_DEPTH:
                where = path if len(path) <= 60 else path[:57] + "..."
                return JsonProblem(f"invalid JSON: nested more than {MAX_DEPTH} levels deep", field=where or None)
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            children = []
            for key, child in pairs:
                if isinstance(key, str) and not key.isascii() and _SURROGATE_RE.search(key):
                    return JsonProblem(f"key {_show(key)} holds a lone surrogate (a \\uD800-\\uDFFF escape "
                                       "that is half of a pair): not valid Unicode", field=path or None)
                children.append((child, _join(path, key), depth + 1))
            stack.extend(reversed(children))
        elif isinstance(item, float) and not math.isfinite(item):
            name = "NaN" if math.isnan(item) else ("-Infinity" if item < 0 else "Infinity")
            return JsonProblem(f"{name} is not a JSON number (numbers must be finite)", field=path or None)
        elif isinstance(item, str) and not item.isascii() and _SURROGATE_RE.search(item):
            return JsonProblem("lone surrogate in a string (a \\uD800-\\uDFFF escape that is half of a pair): "
                               "not valid Unicode", field=path or None)
    return None


def _show(text: str) -> str:
    shown = ascii(text)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def parse_json(text: str, *, line: int | None = None) -> Any:
    """Parse ``text`` as strict corpus JSON; raises :class:`JsonProblem` (``line`` is used when the
    text is one line of a JSON Lines file)."""
    try:
        value = _loads(text)
    except JsonProblem as problem:
        if line is None:
            raise
        raise JsonProblem(problem.message, line, problem.field) from None
    problem = unsupported_value(value)
    if problem is not None:
        raise JsonProblem(problem.message, line, problem.field)
    return value


__all__ = ["MAX_DEPTH", "JsonProblem", "parse_json", "unsupported_value"]
