"""The streamed reduced basis equals an in-memory PCA and keeps the labels."""
from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from sklearn.decomposition import PCA

from emovec.analyses.basis import top_pc_basis
from emovec_store.errors import InputError


def _pooled(lazy: bool) -> xr.DataArray:
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 60, 12)) * np.linspace(3, 0.1, 12)).astype(np.float32)
    data = da.from_array(x, chunks=(1, 16, 12)) if lazy else x
    return xr.DataArray(data, dims=("layer", "stimulus", "hidden"),
                        coords={"layer": [0, 5], "emotion": ("stimulus", ["a", "b", "c"] * 20)})


@pytest.mark.parametrize("lazy", [False, True])
def test_scores_match_an_in_memory_pca_up_to_sign(lazy: bool) -> None:
    pooled = _pooled(lazy)
    reduced = top_pc_basis(pooled, 4)
    assert reduced.dims == ("layer", "stimulus", "hidden") and reduced.shape == (2, 60, 4)
    assert list(reduced.emotion.values) == list(pooled.emotion.values)
    for i in range(2):
        want = PCA(4).fit_transform(np.asarray(pooled.isel(layer=i).values, dtype=np.float64))
        got = reduced.isel(layer=i).values
        np.testing.assert_allclose(np.abs(got), np.abs(want), rtol=1e-6, atol=1e-8)


def test_k_out_of_range_is_refused() -> None:
    with pytest.raises(InputError, match="1 <= k <= hidden"):
        top_pc_basis(_pooled(False), 13)


def test_the_lazy_basis_keeps_k_components_per_layer_not_every_eigenvector() -> None:
    import tracemalloc

    layers, hidden = 12, 256
    x = da.from_array(np.random.default_rng(0).standard_normal((layers, 300, hidden)).astype(np.float32),
                      chunks=(1, 100, hidden))
    pooled = xr.DataArray(x, dims=("layer", "stimulus", "hidden"), coords={"layer": np.arange(layers)})
    tracemalloc.start()
    try:
        reduced = top_pc_basis(pooled, 2)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert reduced.shape == (layers, 300, 2)
    eigenvectors = layers * hidden * hidden * 8  # 6.3 MB: what views into each layer's eigh result kept alive
    assert held < 0.25 * eigenvectors, held
