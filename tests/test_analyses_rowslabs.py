"""Slab-by-slab float64 products (analyses/rowslabs.py): equal to the plain float64 computation on
numpy and dask input (chunks of uneven size, slabs smaller than a chunk), and a task never holds a
float64 copy of its whole chunk (traced allocations, no timing)."""
from __future__ import annotations

import tracemalloc

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

from emovec.analyses import rowslabs
from emovec.analyses.basis import top_pc_basis
from emovec.analyses.vectors import class_means, projections


@pytest.fixture
def small_slabs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rowslabs, "SLAB_BYTES", 8 * 16 * 7)  # 7 rows of 16 per slab: every chunk is split


def _pooled(lazy: bool, n: int = 53, hidden: int = 16, layers: int = 3) -> xr.DataArray:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(layers, n, hidden)) * 100).astype(np.float32)
    data = da.from_array(x, chunks=(1, (20, 13, 20), hidden)) if lazy else x
    labels = np.asarray(["joy", "fear", "calm"] * (n // 3) + ["joy"] * (n % 3), dtype=object)
    return xr.DataArray(data, dims=("layer", "stimulus", "hidden"),
                        coords={"layer": [0, 4, 8], "emotion": ("stimulus", labels),
                                "stimulus": [f"s{i}" for i in range(n)]})


@pytest.mark.parametrize("lazy", [False, True])
def test_weighted_sums_and_products_equal_plain_float64(lazy: bool, small_slabs: None) -> None:
    pooled = _pooled(lazy)
    x = np.asarray(pooled.values, dtype=np.float64)
    w = np.random.default_rng(1).normal(size=(x.shape[1], 4))
    sums = rowslabs.weighted_row_sums(pooled, xr.DataArray(w, dims=("stimulus", "k"), coords={"k": list("abcd")}))
    assert sums.dims == ("layer", "k", "hidden") and list(sums["k"].values) == list("abcd")
    np.testing.assert_allclose(sums.values, np.einsum("sk,lsh->lkh", w, x), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(rowslabs.row_means(pooled).values, x.mean(axis=1), rtol=1e-12, atol=1e-9)
    right = xr.DataArray(np.random.default_rng(2).normal(size=(3, 5, 16)), dims=("layer", "e", "hidden"),
                         coords={"layer": [0, 4, 8]})
    prod = rowslabs.hidden_products(pooled.sel(layer=[8, 0]), right, "e")
    assert prod.dims == ("layer", "stimulus", "e") and list(prod["layer"].values) == [8, 0]
    assert list(prod["emotion"].values) == list(pooled["emotion"].values)
    np.testing.assert_allclose(prod.values, np.einsum("lsh,leh->lse", x[[2, 0]], right.values[[2, 0]]),
                               rtol=1e-12, atol=1e-9)
    gram, total = rowslabs.gram_and_sums(pooled.data[1])
    np.testing.assert_allclose(gram, x[1].T @ x[1], rtol=1e-12)
    np.testing.assert_allclose(total, x[1].sum(axis=0), rtol=1e-12)
    basis, offset = np.random.default_rng(3).normal(size=(16, 3)), x[1].mean(axis=0)
    np.testing.assert_allclose(np.asarray(rowslabs.project_rows(pooled.data[1], basis, offset)),
                               (x[1] - offset) @ basis, rtol=1e-10, atol=1e-9)


def test_the_analyses_built_on_slabs_match_plain_float64(small_slabs: None) -> None:
    pooled = _pooled(True)
    x = np.asarray(pooled.values, dtype=np.float64)
    labels = pooled["emotion"].values
    means = class_means(pooled, categories=["joy", "fear", "calm"]).compute()
    for i, e in enumerate(["joy", "fear", "calm"]):
        np.testing.assert_allclose(means.values[:, i], x[:, labels == e].mean(axis=1), rtol=1e-12)
    vectors = means - means.mean("emotion")
    proj = projections(pooled, vectors).compute()
    unit = vectors.values / np.linalg.norm(vectors.values, axis=-1, keepdims=True)
    np.testing.assert_allclose(proj.values, np.einsum("lsh,leh->lse", x, unit), rtol=1e-10, atol=1e-9)
    assert list(proj["stimulus_emotion"].values) == list(labels)
    scores = top_pc_basis(pooled, 4).compute()
    centred = x[2] - x[2].mean(axis=0)
    top = np.linalg.eigh(centred.T @ centred / x.shape[1])[1][:, ::-1][:, :4]
    np.testing.assert_allclose(np.abs(scores.values[2]), np.abs(centred @ top), rtol=1e-6, atol=1e-6)


def test_a_task_never_holds_a_float64_copy_of_its_chunk() -> None:
    rows, hidden = 8192, 128  # one stored chunk of 4 MiB float32: 8 MiB as float64; slabs are 2 MiB
    chunk = np.ones((1, rows, hidden), dtype=np.float32)
    pooled = xr.DataArray(da.from_array(chunk, chunks=chunk.shape), dims=("layer", "stimulus", "hidden"),
                          coords={"layer": [0]})
    weights = xr.DataArray(np.ones((rows, 2)), dims=("stimulus", "k"))
    float64_chunk = rows * hidden * 8
    with dask.config.set(scheduler="synchronous"):
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            sums = rowslabs.weighted_row_sums(pooled, weights).values
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            plain = xr.dot(pooled.astype(np.float64), weights, dim="stimulus").values
            plain_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    np.testing.assert_allclose(sums[0], plain[0].T, rtol=1e-12)
    assert peak < 0.5 * float64_chunk, (peak, float64_chunk)
    assert plain_peak >= float64_chunk  # the whole-chunk conversion this module replaces (the oracle's cost)
