"""What the memmap writer assumes of an array, checked before it writes a byte.

The writer (:mod:`emovec_store.writer`) names chunk files itself (``c/<i>/<j>/<k>``, zarr's default v3
chunk-key encoding) and writes raw little-endian C-order bytes into them. That is right only for a
Zarr v3 array whose one codec is ``bytes`` (little-endian), whose chunk keys are the default ones with
``/``, and whose dtype, chunk shape and shape are those the readout's attributes say. An array that
differs (edited metadata, a store rewritten by another tool) is refused with one line naming its
``zarr.json`` and the key, so that the writer never writes bytes that zarr would read as something else.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BytesCodec
from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding

from .errors import StoreError


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _codecs_ok(codecs: tuple[Any, ...]) -> bool:
    return (len(codecs) == 1 and isinstance(codecs[0], BytesCodec)
            and getattr(codecs[0].endian, "value", codecs[0].endian) in ("little", None))


def memmap_problem(array: zarr.Array[Any], dtype: np.dtype[Any], chunks: tuple[int, ...],
                   shape: tuple[int, ...]) -> tuple[str, str] | None:
    """The first ``zarr.json`` key of ``array`` that the writer cannot write as raw chunk files, and
    what it holds against what the writer needs; None when the array is as the writer assumes."""
    meta = array.metadata
    if meta.zarr_format != 3:
        return "zarr_format", f"is {meta.zarr_format}, the writer needs 3"
    codecs = tuple(meta.codecs)
    if not _codecs_ok(codecs):
        return "codecs", (f"are {_json([c.to_dict() for c in codecs])}, the writer needs the bytes codec "
                          "alone (little-endian)")
    keys = meta.chunk_key_encoding
    if not (isinstance(keys, DefaultChunkKeyEncoding) and keys.separator == "/"):
        return "chunk_key_encoding", f"is {_json(keys.to_dict())}, the writer needs the default one with '/'"
    if np.dtype(array.dtype) != dtype:
        return "data_type", f"is {np.dtype(array.dtype).name}, the readout's storage dtype needs {dtype.name}"
    if tuple(array.chunks) != tuple(chunks):
        return "chunk_grid", f"has chunks {list(array.chunks)}, the readout's attributes say {list(chunks)}"
    if tuple(array.shape) != tuple(shape):
        return "shape", f"is {list(array.shape)}, the readout's attributes say {list(shape)}"
    return None


def check_memmappable(array: zarr.Array[Any], array_dir: Path, dtype: np.dtype[Any], chunks: tuple[int, ...],
                      shape: tuple[int, ...]) -> None:
    """Raise :class:`StoreError` naming ``array_dir/zarr.json`` and the key when the writer cannot
    memmap ``array`` (see :func:`memmap_problem`)."""
    problem = memmap_problem(array, dtype, chunks, shape)
    if problem is not None:
        key, what = problem
        raise StoreError(f"{str(array_dir / 'zarr.json')!r}: {key} {what}; the writer writes raw chunk files and "
                         "refuses this array (was the store edited, or rewritten by another tool?)")


__all__ = ["check_memmappable", "memmap_problem"]
