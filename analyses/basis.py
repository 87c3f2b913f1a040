"""A reduced basis for layers too large to hold in memory: the top principal components of each
layer from one streamed pass over the store (a dask covariance reduction), and every row projected
onto them, so that probes need ``stimulus × k`` numbers per layer instead of ``stimulus × hidden``.

The components are fitted without labels on all rows (unsupervised, so no label information
reaches the test folds); results say when this basis was used.
"""
from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

from emovec_store.errors import InputError

from .rowslabs import gram_and_sums, project_rows
from .vectors import check_pooled


def top_pc_basis(pooled: xr.DataArray, k: int) -> xr.DataArray:
    """Each layer's rows projected onto its top ``k`` principal components (covariance from one pass).

    Returns dims ``(layer, stimulus, hidden)`` with ``hidden`` = the ``k`` component scores (so every
    analysis taking pooled arrays accepts it) and the stimulus coordinates of ``pooled``; float64,
    **lazy** (dask): the components of every layer are fitted here (one streamed pass per layer), the
    scores of a layer are computed from the store when that layer is read. Memory: ``hidden²`` for the
    covariance here; ``stimulus × k`` for one layer of scores when a consumer reads it.
    """
    check_pooled(pooled, need=())
    hidden = pooled.sizes["hidden"]
    if not 1 <= k <= hidden:
        raise InputError(f"a reduced basis needs 1 <= k <= hidden ({hidden}), got {k}")
    layers = []
    for layer in pooled["layer"].values:
        x = pooled.sel(layer=layer).transpose("stimulus", "hidden").data
        x = x if isinstance(x, da.Array) else da.from_array(np.asarray(x))  # type: ignore[no-untyped-call]
        n = x.shape[0]
        gram, total = gram_and_sums(x)
        mean = total / n
        cov = gram / n - np.outer(mean, mean)
        _, vecs = np.linalg.eigh(cov)
        top = np.ascontiguousarray(vecs[:, ::-1][:, :k])  # a copy: a view would keep all hidden² eigenvectors
        top *= np.sign(top[np.abs(top).argmax(axis=0), np.arange(k)])  # deterministic signs
        layers.append(project_rows(x, top, mean))
    coords = {c: pooled[c] for c in pooled.coords if pooled[c].dims == ("stimulus",)}
    return xr.DataArray(da.stack(layers), dims=("layer", "stimulus", "hidden"),  # type: ignore[no-untyped-call]
                        coords={"layer": pooled["layer"].values, **coords})
