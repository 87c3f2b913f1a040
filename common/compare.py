"""What differs between what a store holds and what a run asks for, one line per key."""
from __future__ import annotations

from collections.abc import Iterable, Mapping


def mismatches(stored: Mapping[str, object], run: Mapping[str, object], *,
               keys: Iterable[str] | None = None) -> list[str]:
    """``"KEY: store has X, this run Y"`` (values repr'd) for every key whose values differ.

    ``keys`` are compared in the order given; by default the sorted union of both mappings' keys. A
    key missing on one side counts as ``None``. The lines go into an
    :class:`~emovec.common.errors.IncompatibleStoreError` when a resume or append is refused.
    """
    names = sorted(set(stored) | set(run)) if keys is None else list(keys)
    return [f"{k}: store has {stored.get(k)!r}, this run {run.get(k)!r}" for k in names
            if stored.get(k) != run.get(k)]


__all__ = ["mismatches"]
