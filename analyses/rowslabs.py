"""Float64 products of stored activations, computed a slab of rows at a time.

Activations are stored as float32 (or float16/bf16 decoded to float32) in chunks of about 8 MiB, and
the analyses accumulate in float64. Converting a whole chunk first (``x.astype(np.float64)``, then a
dot product that may copy it again) makes every dask task hold two to three float64 copies of its
chunk: at two threads, 50–100 MB that grow with the chunk — that is, with the store, until a layer
spans several chunks. The functions here convert and multiply :data:`SLAB_BYTES` of rows at a time
inside each task instead, so a task holds its stored chunk plus a few MiB whatever the chunk size.
Results equal the whole-chunk computation up to float64 summation order.

Every function takes numpy- or dask-backed input; a dask input gives a lazy dask result.
"""
from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

#: Rows converted to float64 at once inside one task: at most this many bytes of float64.
SLAB_BYTES = 2 * 2**20


def slab_rows(hidden: int) -> int:
    """Rows of ``hidden`` float64 values that fit :data:`SLAB_BYTES` (at least 1)."""
    return max(1, SLAB_BYTES // (8 * max(1, hidden)))


def _slabs(rows: int, hidden: int) -> range:
    return range(0, rows, slab_rows(hidden))


def _slab_matmul(block: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``block.astype(float64) @ right`` for ``block`` (..., rows, hidden) and ``right`` (..., hidden, k)."""
    step = slab_rows(block.shape[-1])
    out = np.empty(np.broadcast_shapes(block.shape[:-2], right.shape[:-2]) + (block.shape[-2], right.shape[-1]))
    for s in _slabs(block.shape[-2], block.shape[-1]):
        out[..., s:s + step, :] = np.matmul(block[..., s:s + step, :].astype(np.float64), right)
    return out


def _slab_weighted_sum(block: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``weightsᵀ @ block`` summed over rows: block (layer, rows, hidden), weights (rows, k) →
    (layer, 1, k, hidden) (the 1 is this block's slot in the row-block axis summed afterwards)."""
    step = slab_rows(block.shape[-1])
    out = np.zeros((block.shape[0], weights.shape[1], block.shape[-1]))
    for s in _slabs(block.shape[-2], block.shape[-1]):
        out += np.matmul(weights[s:s + step].T, block[:, s:s + step, :].astype(np.float64))
    return out[:, None]


def _slab_gram(block: np.ndarray, _same_block: np.ndarray) -> np.ndarray:
    """``(xᵀx, Σx)`` of one row block (rows, hidden) as one (1, hidden + 1, hidden) array: the gram
    rows, then the column sums. ``_same_block`` is ``block`` again: :func:`dask.array.blockwise` is handed
    the array twice so that the output can carry both hidden indices (gram rows and columns)."""
    step = slab_rows(block.shape[-1])
    out = np.zeros((block.shape[1] + 1, block.shape[1]))
    for s in _slabs(block.shape[0], block.shape[1]):
        x = block[s:s + step].astype(np.float64)
        out[:-1] += x.T @ x
        out[-1] += x.sum(axis=0)
    return out[None]


def weighted_row_sums(pooled: xr.DataArray, weights: xr.DataArray) -> xr.DataArray:
    """``Σ_stimulus weights[stimulus, k] · pooled[layer, stimulus, hidden]`` in float64.

    ``pooled`` has dims (layer, stimulus, hidden); ``weights`` dims (stimulus, K) for any one other dim
    ``K`` (numpy-backed, aligned by position). Returns dims (layer, K, hidden) with ``weights``'s ``K``
    coordinate and ``pooled``'s ``layer``.
    """
    (other,) = [str(d) for d in weights.dims if d != "stimulus"]
    x = pooled.transpose("layer", "stimulus", "hidden").data
    w = np.asarray(weights.transpose("stimulus", other).values, dtype=np.float64)
    if isinstance(x, da.Array):
        x = x.rechunk({2: -1})  # type: ignore[no-untyped-call]
        w_d = da.from_array(w, chunks=(x.chunks[1], -1))  # type: ignore[no-untyped-call]
        parts = da.blockwise(_slab_weighted_sum, "lskh", x, "lsh", w_d, "sk",  # type: ignore[no-untyped-call]
                             adjust_chunks={"s": 1}, dtype=np.float64, concatenate=True)
        total: Any = parts.sum(axis=1)
    else:
        total = _slab_weighted_sum(np.asarray(x), w)[:, 0]
    coords = {"layer": pooled["layer"].values}
    if other in weights.coords:
        coords[other] = weights[other].values
    return xr.DataArray(total, dims=("layer", other, "hidden"), coords=coords)


def row_means(pooled: xr.DataArray) -> xr.DataArray:
    """The mean over ``stimulus`` of ``pooled`` (layer, stimulus, hidden) in float64: dims (layer, hidden)."""
    n = pooled.sizes["stimulus"]
    weights = xr.DataArray(np.full((n, 1), 1.0 / max(1, n)), dims=("stimulus", "one"))
    return weighted_row_sums(pooled, weights).isel(one=0, drop=True)


def hidden_products(pooled: xr.DataArray, right: xr.DataArray, dim: str) -> xr.DataArray:
    """``pooled[layer, stimulus, :] · right[layer, dim, :]`` in float64: dims (layer, stimulus, ``dim``).

    ``right`` (numpy-backed) must cover ``pooled``'s layers; its ``dim`` coordinate is kept, and so are
    ``pooled``'s stimulus coordinates.
    """
    layers = pooled["layer"].values
    r = np.asarray(right.sel(layer=layers).transpose("layer", "hidden", dim).values, dtype=np.float64)
    x = pooled.transpose("layer", "stimulus", "hidden").data
    if isinstance(x, da.Array):
        x = x.rechunk({2: -1})  # type: ignore[no-untyped-call]
        r_d = da.from_array(r, chunks=(x.chunks[0], -1, -1))  # type: ignore[no-untyped-call]
        out: Any = da.blockwise(_slab_matmul, "lsk", x, "lsh", r_d, "lhk",  # type: ignore[no-untyped-call]
                                dtype=np.float64, concatenate=True)
    else:
        out = _slab_matmul(np.asarray(x), r)
    stim = {c: pooled[c] for c in pooled.coords if pooled[c].dims == ("stimulus",)}
    coords = {"layer": layers, **stim}
    if dim in right.coords:
        coords[dim] = right[dim].values
    return xr.DataArray(out, dims=("layer", "stimulus", dim), coords=coords)


def gram_and_sums(x: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(xᵀx, Σ_rows x)`` in float64 of a 2-D (rows, hidden) numpy or dask array (computed here)."""
    if isinstance(x, da.Array):
        x = x.rechunk({1: -1})  # type: ignore[no-untyped-call]
        parts = da.blockwise(_slab_gram, "sgh", x, "sh", x, "sg",  # type: ignore[no-untyped-call]
                             adjust_chunks={"s": 1, "g": lambda g: g + 1}, dtype=np.float64, concatenate=True)
        both = np.asarray(parts.sum(axis=0))
    else:
        both = _slab_gram(np.asarray(x), np.asarray(x))[0]
    return both[:-1], both[-1]


def project_rows(x: Any, basis: np.ndarray, offset: np.ndarray) -> Any:
    """``(x − offset) @ basis`` in float64 for 2-D ``x`` (rows, hidden), ``basis`` (hidden, k): lazy on
    dask input (computed when read), without a float64 copy of a whole chunk."""
    shift = offset @ basis
    if isinstance(x, da.Array):
        x = x.rechunk({1: -1})  # type: ignore[no-untyped-call]
        return x.map_blocks(_slab_matmul, basis, chunks=(x.chunks[0], (basis.shape[1],)),
                            dtype=np.float64) - shift
    return _slab_matmul(np.asarray(x), basis) - shift
