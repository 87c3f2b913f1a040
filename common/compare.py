"""What differs between what a store holds and what a run asks for, one line per key."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TypeGuard

#: Sequences longer than this are shown by their length, first and last items, and the difference.
SHOWN_ITEMS = 6


def _is_seq(value: object) -> TypeGuard[list[object] | tuple[object, ...]]:
    return isinstance(value, (list, tuple))


def _items(values: Sequence[object]) -> str:
    """``[0, 1, 2, …, 30]``: every item of a short sequence, the ends of a long one."""
    if len(values) <= SHOWN_ITEMS:
        return "[" + ", ".join(repr(v) for v in values) + "]"
    return "[" + ", ".join(repr(v) for v in values[:3]) + f", …, {values[-1]!r}]"


def _value(value: object) -> str:
    if _is_seq(value):
        return f"{len(value)} values {_items(value)}" if len(value) > SHOWN_ITEMS else _items(value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "…"


def _difference(stored: Sequence[object], run: Sequence[object]) -> str:
    """What two sequences differ in: the positions that differ (same length), else the items only
    one of them has."""
    if len(stored) == len(run):
        diff = [i for i, (a, b) in enumerate(zip(stored, run)) if a != b]
        return (f" ({len(diff)} of {len(stored)} positions differ, first at index {diff[0]}: "
                f"{stored[diff[0]]!r} vs {run[diff[0]]!r})")
    try:
        in_stored, in_run = set(stored), set(run)
    except TypeError:  # unhashable items (nested lists, dicts): the lengths say it
        return ""
    parts = []
    only_stored = [v for v in dict.fromkeys(stored) if v not in in_run]
    only_run = [v for v in dict.fromkeys(run) if v not in in_stored]
    if only_stored:
        parts.append(f"only in the store: {_items(only_stored)}")
    if only_run:
        parts.append(f"only in this run: {_items(only_run)}")
    return " (" + "; ".join(parts) + ")" if parts else ""


def describe(key: str, stored: object, run: object) -> str:
    """``"KEY: store has X, this run Y"``; long sequences are summarised with what differs in them."""
    line = f"{key}: store has {_value(stored)}, this run {_value(run)}"
    if _is_seq(stored) and _is_seq(run) and (len(stored) > SHOWN_ITEMS or len(run) > SHOWN_ITEMS):
        line += _difference(stored, run)
    return line


def mismatches(stored: Mapping[str, object], run: Mapping[str, object], *,
               keys: Iterable[str] | None = None) -> list[str]:
    """``"KEY: store has X, this run Y"`` for every key whose values differ (see :func:`describe`).

    ``keys`` are compared in the order given; by default the sorted union of both mappings' keys. A
    key missing on one side counts as ``None``. The lines go into an
    :class:`~emovec.common.errors.IncompatibleStoreError` when a resume or append is refused, so a
    31-layer list is shown by its ends and the layers only one side has, not printed whole.
    """
    names = sorted(set(stored) | set(run)) if keys is None else list(keys)
    return [describe(k, stored.get(k), run.get(k)) for k in names if stored.get(k) != run.get(k)]


__all__ = ["describe", "mismatches"]
