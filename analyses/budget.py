"""The analyses' memory budget: how much of one layer of stories an analysis may hold at once.

``layer_budget_mb`` (``AnalyzeOptions``, ``emovec analyze --layer-budget-mb``) is a size in MB of one
layer of the stories as float64 (stimulus × hidden × 8 bytes). A layer within it is analysed in memory,
read once; a larger layer is never held whole: the analyses read it one stored chunk at a time and
work in slices of rows and blocks of bootstrap replicates sized to fractions of the budget, and the
probes run on a reduced basis that fits it (:mod:`.basis`). What such a step holds is then bounded by
the budget and the store's chunk size (about 8 MiB), not by the number of stories.
"""
from __future__ import annotations

import ctypes
import platform
from collections.abc import Iterator
from functools import cache
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

#: Default budget: one float64 layer of this many MB is analysed in memory.
DEFAULT_LAYER_BUDGET_MB = 512.0
#: Share of the budget one slice of rows takes once converted to float64 (streamed steps).
SLICE_SHARE = 0.25
#: Share of the budget one block of bootstrap replicates (replicate × emotion × hidden, float64) takes.
BLOCK_SHARE = 0.25


def layer_megabytes(pooled: xr.DataArray) -> float:
    """Size of one layer of ``pooled`` as float64 in memory, MB."""
    return pooled.sizes["stimulus"] * pooled.sizes["hidden"] * 8 / 1e6


def fits(pooled: xr.DataArray, budget_mb: float) -> bool:
    """Whether one float64 layer of ``pooled`` is within ``budget_mb``."""
    return layer_megabytes(pooled) <= budget_mb


def share_rows(row_bytes: int, budget_mb: float, share: float) -> int:
    """How many rows of ``row_bytes`` bytes fit ``share`` of the budget (at least 1)."""
    return max(1, int(budget_mb * 1e6 * share // max(1, row_bytes)))


def as_numpy(x: Any) -> np.ndarray:
    """A numpy or dask array as numpy in its stored dtype (a dask array is computed: one read)."""
    return np.asarray(x)  # numpy computes a dask array through its __array__


def as_float64(x: Any) -> np.ndarray:
    """A 2-D numpy or dask array as one C-ordered float64 numpy array. A dask array's chunks are computed
    one at a time (in order) and copied into place, so the peak is the result plus one chunk, where
    ``np.asarray`` first holds every computed chunk and then their concatenation (twice the result)."""
    if not isinstance(x, da.Array):
        return np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty(x.shape, dtype=np.float64)
    for start, rows in row_blocks(x, max(1, x.shape[0])):
        out[start:start + rows.shape[0]] = rows
    return out


def row_blocks(x: Any, step: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, rows)`` of a 2-D numpy or dask array, in row order and in its stored dtype: a
    dask array is computed one chunk (along the first axis) at a time, and each chunk is handed out
    in slices of at most ``step`` rows (views, no copies)."""
    if isinstance(x, da.Array):
        bounds = np.cumsum((0, *x.chunks[0]))
        for a, b in zip(bounds[:-1], bounds[1:]):
            chunk = np.asarray(x[int(a):int(b)])
            for s in range(0, chunk.shape[0], step):
                yield int(a) + s, chunk[s:s + step]
    else:
        arr = np.asarray(x)
        for s in range(0, arr.shape[0], step):
            yield s, arr[s:s + step]


def basis_size(n_rows: int, budget_mb: float, limit: int) -> int:
    """Components of a reduced basis (:mod:`.basis`) whose layer of scores, ``n_rows × k`` float64,
    fits ``budget_mb``: at most ``limit``, at least 1. A probe on that basis then holds what an
    in-memory probe holds on a layer of the budget's size, however many stories there are."""
    return int(max(1, min(limit, budget_mb * 1e6 // (max(1, n_rows) * 8))))


#: glibc's ``mallopt`` parameter number of ``M_TRIM_THRESHOLD`` (malloc.h).
_M_TRIM_THRESHOLD = -1
#: Free memory at the top of the heap beyond this many bytes goes back to the OS at once.
TRIM_THRESHOLD_BYTES = 64 * 1024


@cache
def return_freed_memory() -> bool:
    """Make glibc give freed memory back to the operating system promptly; ``True`` where applied.

    The analyses allocate and free many chunk-sized float64 buffers (8–70 MB) from two dask threads.
    glibc's default raises its mmap threshold to the largest buffer freed so far, after which such
    buffers come from the heap and stay resident after ``free`` — the process's RSS then tracks the
    most it ever held, step after step, instead of what it holds now. Setting ``M_TRIM_THRESHOLD``
    (what dask.distributed's workers do through ``MALLOC_TRIM_THRESHOLD_``) fixes the threshold and
    trims the heap beyond 64 KiB of free space. Measured in ``benchmarks/analyze_scaling.py`` (16×
    stories): peak RSS 559 → 381 MiB. A no-op (``False``) on other C libraries; process-wide, once.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False


def trim_heap() -> bool:
    """Hand the free pages inside glibc's heaps back to the operating system (``malloc_trim(0)``).

    :func:`return_freed_memory` trims only the top of the heap; memory freed below a live allocation
    stays resident. A step that builds and drops many mid-sized objects (the stimulus texts decoded from
    the store, per-fold term matrices) leaves such holes: 25 MB of resident set for 0.7 MB of live objects
    after reading 15,504 texts (``benchmarks/analyze_scaling.py``, 16× stories). The pipeline calls this
    between steps (milliseconds). ``False`` (a no-op) on other C libraries.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False
