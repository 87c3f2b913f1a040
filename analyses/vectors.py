"""Emotion vectors: class means, centring, neutral-PCA denoising and per-stimulus projections.

The recipe (Anthropic 2026, field-notes §0): per layer, ``m(e)`` = mean pooled activation of the
stories of emotion ``e``; the raw vector is ``m(e) − mean_e' m(e')`` (or ``m(e) − mean(neutral)``);
denoising projects out the top principal components of the neutral texts' activations that together
explain ``denoise`` (default 50 %) of their variance, ``k`` recorded per layer.

Class means are one dask reduction over the store (a one-hot weighted sum along ``stimulus``,
accumulated in float64 a slab of rows at a time: :mod:`.rowslabs`), so no layer is ever materialised
whole.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import xarray as xr

from emovec_store.errors import InputError

from ._common import as_labels
from .rowslabs import hidden_products, row_means, weighted_row_sums

Baseline = Literal["mean", "neutral"]
DIMS = ("layer", "stimulus", "hidden")


def check_pooled(pooled: xr.DataArray, *, need: tuple[str, ...] = ("emotion",)) -> None:
    """Refuse arrays without the dims ``(layer, stimulus, hidden)`` or without the label coords."""
    if set(pooled.dims) != set(DIMS):
        raise InputError(f"expected a pooled array with dims {DIMS}, got {pooled.dims}")
    missing = [c for c in need if c not in pooled.coords]
    if missing:
        raise InputError(f"the pooled array has no {', '.join(missing)} coordinate; stimuli need labels")


def _labelled(pooled: xr.DataArray, by: str) -> xr.DataArray:
    labels = as_labels(pooled[by])
    keep = labels != ""
    if not keep.any():
        raise InputError(f"no stimulus carries a {by!r} label")
    return pooled.isel(stimulus=np.flatnonzero(keep))


def class_means(pooled: xr.DataArray, *, by: str = "emotion",
                categories: list[str] | None = None) -> xr.DataArray:
    """Mean activation per label, dims ``(layer, <by>, hidden)``, accumulated in float64.

    Rows with an empty label are ignored. ``categories`` fixes the order (and drops labels not in
    it); by default labels are sorted. Lazy: a dask-backed input stays a dask graph until computed.
    """
    check_pooled(pooled, need=(by,))
    data = _labelled(pooled, by)
    labels = as_labels(data[by])
    cats = list(categories) if categories is not None else sorted(set(labels))
    onehot = (labels[:, None] == np.asarray(cats, dtype=object)[None, :]).astype(np.float64)
    counts = onehot.sum(axis=0)
    if (counts == 0).any():
        empty = [c for c, n in zip(cats, counts) if n == 0]
        raise InputError(f"no stimulus of {by} {', '.join(empty)}")
    weights = xr.DataArray(onehot / counts, dims=("stimulus", by), coords={by: cats})
    means = weighted_row_sums(data, weights)
    return means.assign_coords({f"n_{by}": (by, counts.astype(np.int64))})


def neutral_components(neutral: xr.DataArray, threshold: float = 0.5) -> tuple[xr.DataArray, xr.DataArray]:
    """Per layer, the top principal components of neutral activations explaining ``threshold``.

    Returns ``(components, k)``: components dims ``(layer, component, hidden)`` (orthonormal rows,
    zero beyond ``k``) and ``k`` dims ``(layer,)``, the smallest count whose cumulative explained
    variance reaches ``threshold``.
    """
    if not 0 < threshold <= 1:
        raise InputError(f"denoise threshold must be in (0, 1], got {threshold}")
    x = np.asarray(neutral.transpose("layer", "stimulus", "hidden").values, dtype=np.float64)
    n_layers, n, hidden = x.shape
    if n < 2:
        raise InputError("neutral-PCA denoising needs at least 2 neutral stimuli")
    n_comp = min(n, hidden)
    comps = np.zeros((n_layers, n_comp, hidden))
    ks = np.zeros(n_layers, dtype=np.int64)
    for i in range(n_layers):
        centred = x[i] - x[i].mean(axis=0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        var = s**2
        total = var.sum()
        if total <= 0:
            continue
        k = int(np.searchsorted(np.cumsum(var) / total, threshold - 1e-12) + 1)
        comps[i, :k] = vt[:k]
        ks[i] = k
    layer = neutral["layer"].values
    return (xr.DataArray(comps, dims=("layer", "component", "hidden"), coords={"layer": layer}),
            xr.DataArray(ks, dims=("layer",), coords={"layer": layer}))


def project_out(vectors: xr.DataArray, components: xr.DataArray) -> xr.DataArray:
    """``v − Σ_i (v·c_i) c_i`` per layer (components orthonormal; zero rows are no-ops)."""
    coef = xr.dot(vectors, components, dim="hidden")
    removed: xr.DataArray = xr.dot(coef, components, dim="component")
    return vectors - removed


@dataclass(frozen=True)
class Vectors:
    """Emotion vectors of every layer.

    ``raw`` and ``denoised`` have dims ``(layer, emotion, hidden)`` (float64); ``vectors`` is the
    one the analyses use (denoised when denoising ran, else raw); ``means`` the class means;
    ``denoise_k`` (layer) the number of neutral components removed and ``components``
    (layer, component, hidden) the removed directions (None without denoising).
    """

    raw: xr.DataArray
    denoised: xr.DataArray | None
    means: xr.DataArray
    denoise_k: xr.DataArray | None
    baseline: Baseline
    denoise: float | None
    components: xr.DataArray | None = None

    @property
    def vectors(self) -> xr.DataArray:
        return self.denoised if self.denoised is not None else self.raw

    def to_dataset(self) -> xr.Dataset:
        """Everything as one Dataset (what is written to the store's ``derived/vectors``)."""
        data = {"raw": self.raw, "means": self.means}
        if self.denoised is not None and self.denoise_k is not None:
            data["denoised"] = self.denoised
            data["denoise_k"] = self.denoise_k
        ds = xr.Dataset(data)
        ds.attrs.update({"baseline": self.baseline, "denoise_threshold": self.denoise,
                         "recipe": "class mean minus " + ("mean of class means" if self.baseline == "mean"
                                                          else "neutral mean") +
                                   ("" if self.denoise is None else
                                    f"; neutral PCA components explaining {self.denoise:.0%} projected out")})
        return ds


def emotion_vectors(stories: xr.DataArray, *, neutral: xr.DataArray | None = None,
                    categories: list[str] | None = None, baseline: Baseline = "mean",
                    denoise: float | None = 0.5) -> Vectors:
    """Emotion vectors per layer from pooled story activations (see the module docstring).

    Parameters
    ----------
    stories : DataArray, dims (layer, stimulus, hidden), with an ``emotion`` coordinate.
    neutral : DataArray, dims (layer, stimulus, hidden): the neutral texts, needed for
        ``baseline="neutral"`` and for denoising; without it ``denoise`` must be None.
    categories : emotion order (default: sorted labels).
    baseline : ``"mean"`` subtracts the mean of class means (Anthropic); ``"neutral"`` the neutral mean.
    denoise : variance threshold of the neutral PCA (None: no denoising).
    """
    if baseline not in ("mean", "neutral"):
        raise InputError(f"baseline must be 'mean' or 'neutral', got {baseline!r}")
    if neutral is None and (baseline == "neutral" or denoise is not None):
        raise InputError("no neutral stimuli: use baseline='mean' and denoise=None, or extract neutral texts")
    means = class_means(stories, categories=categories).compute()
    if baseline == "mean":
        raw = means - means.mean("emotion")
    else:
        assert neutral is not None
        raw = means - row_means(neutral).compute()
    raw = raw.drop_vars("n_emotion")
    denoised = k = comps = None
    if denoise is not None:
        assert neutral is not None
        comps, k = neutral_components(neutral.compute(), denoise)
        denoised = project_out(raw, comps).transpose("layer", "emotion", "hidden")
    return Vectors(raw=raw, denoised=denoised, means=means, denoise_k=k, baseline=baseline, denoise=denoise,
                   components=comps)


def unit(vectors: xr.DataArray, dim: str = "hidden") -> xr.DataArray:
    """Vectors scaled to unit L2 norm along ``dim`` (zero vectors stay zero)."""
    norm = (vectors**2).sum(dim) ** 0.5
    return vectors / norm.where(norm > 0, 1.0)


def projections(pooled: xr.DataArray, vectors: xr.DataArray) -> xr.DataArray:
    """Each stimulus projected onto each unit emotion vector: dims ``(layer, stimulus, emotion)``.

    Lazy on dask input; float64. Stimulus coordinates are kept; the stimuli's own ``emotion`` label
    (which would clash with the ``emotion`` dimension) becomes ``stimulus_emotion``.
    """
    check_pooled(pooled, need=())
    if "emotion" in pooled.coords and "emotion" not in pooled.dims:
        pooled = pooled.rename({"emotion": "stimulus_emotion"})
    return hidden_products(pooled, unit(vectors).compute(), "emotion")
