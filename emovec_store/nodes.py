"""Typed access to the nodes of a zarr hierarchy (``group[path]`` may be an array or a group)."""
from __future__ import annotations

from typing import Any

import numpy as np
import zarr

from .errors import StoreError


def group_at(parent: zarr.Group, path: str) -> zarr.Group:
    """The group at ``path`` below ``parent``; KeyError if there is none, StoreError if it is an array."""
    node = parent[path]
    if not isinstance(node, zarr.Group):
        raise StoreError(f"{path!r} is an array where the store layout has a group; the store is damaged")
    return node


def array_at(parent: zarr.Group, path: str) -> zarr.Array[Any]:
    """The array at ``path`` below ``parent``; KeyError if there is none, StoreError if it is a group."""
    node = parent[path]
    if not isinstance(node, zarr.Array):
        raise StoreError(f"{path!r} is a group where the store layout has an array; the store is damaged")
    return node


def read_values(parent: zarr.Group, path: str) -> np.ndarray[Any, Any]:
    """All values of the array at ``path`` below ``parent``, as a numpy array."""
    return np.asarray(array_at(parent, path)[...])


def json_list(value: object, what: str = "attribute") -> list[Any]:
    """A JSON attribute that must be a list (zarr types attribute values as any JSON)."""
    if not isinstance(value, list):
        raise StoreError(f"{what} is {type(value).__name__}, expected a list; the store is damaged")
    return value


def json_int(value: object, what: str = "attribute") -> int:
    """A JSON attribute that must be an integer."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise StoreError(f"{what} is {value!r}, expected an integer; the store is damaged")
    return value
