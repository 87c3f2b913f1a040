"""Layers: cross-layer RSA of the cosine matrices, the fixed default layer, the lexical floor and a norm check.

What this module reports, and what it refuses to report:

- The headline layer is fixed in advance: :func:`default_layer` is the stored layer nearest to 2/3 of
  the depth (Anthropic's default, field-notes §3.2). The maximum over layers of a metric is reported
  as ``best_layer`` / ``best`` only as a *descriptive* number: it is chosen on the very values it
  shows, so it is biased upwards and is never a headline.
- Every metric is shown against the embedding layer (``hidden_states`` 0, the lexical floor): on
  LLM-written stories much of the emotion geometry is already present in the token embeddings.
  The rise above the floor is a plain difference of the two point estimates. No CI is attached to
  it: a CI of a difference cannot be derived from the two marginal CIs (the per-layer bootstraps
  are not independent of each other, nor known to be paired), so the summary shows the floor's and
  the default layer's Estimates, each with its own CI, side by side.
- A metric whose value across layers tracks the mean vector norm (|Spearman ρ| ≥ 0.8 by default)
  is flagged: raw-unit metrics that grow with the residual norm made the references' cross-layer
  and cross-model comparisons meaningless (field-notes §1.5). A flag is a warning to look, not a
  verdict: a scale-free metric can rise with depth for real reasons while the norm also grows.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from scipy.stats import rankdata

from emovec_store.errors import InputError

from .stats import Estimate, json_float

NORM_FLAG_THRESHOLD = 0.8


def row_correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between every row of ``a`` (m, n) and every row of ``b`` (k, n) → (m, k).

    Rows with zero variance or non-finite values give NaN (no warning); results are clipped to
    [−1, 1]. Spearman ρ is this applied to ranks.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ac = a - a.mean(axis=-1, keepdims=True)
    bc = b - b.mean(axis=-1, keepdims=True)
    denom = np.outer(np.sqrt((ac**2).sum(axis=-1)), np.sqrt((bc**2).sum(axis=-1)))
    out = np.full(denom.shape, np.nan)
    np.divide(ac @ bc.T, denom, out=out, where=denom > 0)
    clipped: np.ndarray = np.clip(out, -1.0, 1.0)
    return clipped


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis; rows holding a non-finite value become NaN."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    finite = np.isfinite(x).all(axis=-1)
    if finite.any():
        out[finite] = rankdata(x[finite], axis=-1)
    return out


def cross_layer_rsa(cosines: xr.DataArray) -> xr.DataArray:
    """Spearman ρ between the upper triangles of the cosine matrices of every pair of layers.

    Parameters
    ----------
    cosines : DataArray, dims (layer, emotion, emotion_b)
        Symmetric emotion × emotion similarity matrices, one per layer.

    Returns
    -------
    DataArray, dims (layer, layer_b)
        Symmetric, 1 on the diagonal; NaN for a layer whose matrix is constant or not finite.
    """
    if set(cosines.dims) != {"layer", "emotion", "emotion_b"}:
        raise InputError(f"expected cosines with dims (layer, emotion, emotion_b), got {cosines.dims}")
    c = np.asarray(cosines.transpose("layer", "emotion", "emotion_b").values, dtype=np.float64)
    if c.shape[1] != c.shape[2] or c.shape[1] < 3:
        raise InputError(f"cross-layer RSA needs square matrices of at least 3 emotions, got {c.shape[1:]}")
    upper = np.triu_indices(c.shape[1], k=1)
    ranks = _ranks(c[:, upper[0], upper[1]])
    layers = cosines["layer"].values
    return xr.DataArray(row_correlations(ranks, ranks), dims=("layer", "layer_b"),
                        coords={"layer": layers, "layer_b": layers},
                        attrs={"statistic": "Spearman rho between upper triangles (k=1)"})


def default_layer(layers: Sequence[int], max_layer: int | None = None) -> int:
    """The fixed-in-advance default layer: the stored layer nearest to ``round(2/3 × max_layer)``.

    Parameters
    ----------
    layers : the stored ``hidden_states`` indices.
    max_layer : the model's last ``hidden_states`` index (default: the largest stored layer; pass
        it when only a subset of layers is analysed). Ties go to the shallower layer.
    """
    stored = sorted(int(x) for x in layers)
    if not stored:
        raise InputError("no layers given")
    top = stored[-1] if max_layer is None else int(max_layer)
    target = round(2 * top / 3)
    return min(stored, key=lambda x: (abs(x - target), x))


def _index_of(layers: Sequence[int], layer: int) -> int:
    stored = [int(x) for x in layers]
    if layer not in stored:
        raise InputError(f"layer {layer} is not among the analysed layers {stored}")
    return stored.index(layer)


def floor_rise(values: Sequence[Estimate], layers: Sequence[int], *, floor_layer: int = 0) -> xr.DataArray:
    """How far each layer's metric rises above the embedding layer's: ``value(layer) − value(floor)``.

    Parameters
    ----------
    values : one Estimate per layer, aligned with ``layers``.
    layers : the layer indices of ``values``.
    floor_layer : the reference layer (0 = embedding layer, the lexical floor).

    Returns
    -------
    DataArray, dims (layer,)
        The differences of the point estimates. No CI: see the module docstring; show the two
        Estimates' CIs side by side instead.
    """
    if len(values) != len(layers):
        raise InputError(f"{len(values)} values for {len(layers)} layers")
    floor = values[_index_of(layers, floor_layer)].value
    return xr.DataArray(np.array([e.value - floor for e in values], dtype=np.float64), dims=("layer",),
                        coords={"layer": [int(x) for x in layers]}, attrs={"floor_layer": int(floor_layer)})


def norm_confound_check(metrics: Mapping[str, Sequence[float]], mean_norm: Sequence[float], *,
                        threshold: float = NORM_FLAG_THRESHOLD) -> list[dict[str, Any]]:
    """Spearman ρ across layers of each metric with the mean vector norm; flag ``|ρ| ≥ threshold``.

    Parameters
    ----------
    metrics : metric name → one value per layer (aligned with ``mean_norm``).
    mean_norm : the mean L2 norm of the emotion vectors per layer.
    threshold : the flagging threshold on |ρ| (default 0.8, fixed in advance).

    Returns
    -------
    list of {"metric", "rho", "flagged"}
        ``rho`` is None (and not flagged) when fewer than 3 layers have finite values or either
        series is constant.
    """
    norm = np.asarray(mean_norm, dtype=np.float64)
    out = []
    for name, vals in metrics.items():
        v = np.asarray(vals, dtype=np.float64)
        if v.shape != norm.shape:
            raise InputError(f"metric {name!r} has {v.size} values for {norm.size} layers")
        ok = np.isfinite(v) & np.isfinite(norm)
        rho = None
        if ok.sum() >= 3:
            r = row_correlations(rankdata(v[ok])[None], rankdata(norm[ok])[None])[0, 0]
            rho = json_float(r)
        out.append({"metric": str(name), "rho": rho, "flagged": bool(rho is not None and abs(rho) >= threshold)})
    return out


@dataclass(frozen=True)
class LayerSummary:
    """One metric across layers: the descriptive best layer, the default layer and the lexical floor.

    ``best_layer``/``best`` are the maximum over layers (descriptive only, chosen on the values it
    shows); ``default`` is the fixed 2/3-depth layer's Estimate (the headline); ``floor`` the
    embedding layer's and ``rise_above_floor`` = default − floor (None without a stored floor layer).
    """

    metric: str
    best_layer: int | None
    best: Estimate | None
    default: Estimate
    floor: Estimate | None
    rise_above_floor: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"metric": self.metric, "best_layer": self.best_layer,
                "best": None if self.best is None else self.best.to_dict(), "default": self.default.to_dict(),
                "floor": None if self.floor is None else self.floor.to_dict(),
                "rise_above_floor": json_float(self.rise_above_floor)}


def summarise_metric(name: str, values: Sequence[Estimate], layers: Sequence[int], *, default: int,
                     floor_layer: int = 0) -> LayerSummary:
    """The :class:`LayerSummary` of one metric (``values`` aligned with ``layers``; higher is better)."""
    if len(values) != len(layers):
        raise InputError(f"metric {name!r} has {len(values)} values for {len(layers)} layers")
    stored = [int(x) for x in layers]
    point = np.array([e.value for e in values], dtype=np.float64)
    finite = np.isfinite(point)
    best_i = int(np.flatnonzero(finite)[np.argmax(point[finite])]) if finite.any() else None
    default_est = values[_index_of(stored, default)]
    floor = values[stored.index(floor_layer)] if floor_layer in stored else None
    rise = None
    if floor is not None:
        rise = float(floor_rise(values, stored, floor_layer=floor_layer).sel(layer=default))
    return LayerSummary(metric=str(name), best_layer=None if best_i is None else stored[best_i],
                        best=None if best_i is None else values[best_i], default=default_est, floor=floor,
                        rise_above_floor=rise)


@dataclass(frozen=True)
class LayersResult:
    """Cross-layer RSA ``rsa`` (layer, layer_b), the default layer, one summary per metric, the norm check."""

    rsa: xr.DataArray
    default_layer: int
    summary: tuple[LayerSummary, ...]
    norm_check: tuple[dict[str, Any], ...]

    @property
    def layers(self) -> list[int]:
        return [int(x) for x in self.rsa["layer"].values]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"layer", "rsa", "default_layer", "summary", "norm_check"}``."""
        return {"layer": self.layers,
                "rsa": [[json_float(x) for x in row] for row in self.rsa.transpose("layer", "layer_b").values],
                "default_layer": int(self.default_layer),
                "summary": [s.to_dict() for s in self.summary],
                "norm_check": [dict(c) for c in self.norm_check]}


def run_layers(cosines: xr.DataArray, metrics: Mapping[str, Sequence[Estimate]], mean_norm: Sequence[float],
               layers: Sequence[int], *, max_layer: int | None = None, floor_layer: int = 0,
               norm_threshold: float = NORM_FLAG_THRESHOLD) -> LayersResult:
    """The layers family: cross-layer RSA, per-metric summary against the floor, and the norm check.

    Parameters
    ----------
    cosines : DataArray, dims (layer, emotion, emotion_b), covering ``layers``.
    metrics : metric name → one Estimate per layer (aligned with ``layers``; higher is better).
    mean_norm : mean emotion-vector L2 norm per layer (aligned with ``layers``).
    layers : the analysed ``hidden_states`` indices.
    max_layer : the model's last layer index, for :func:`default_layer` (default: ``max(layers)``).
    floor_layer : the lexical floor (0 = embedding layer); without it stored, floor and rise are None.
    norm_threshold : |ρ| at which :func:`norm_confound_check` flags a metric.
    """
    stored = [int(x) for x in layers]
    if len(mean_norm) != len(stored):
        raise InputError(f"{len(mean_norm)} mean norms for {len(stored)} layers")
    missing = sorted(set(stored) - {int(x) for x in cosines["layer"].values})
    if missing:
        raise InputError(f"the cosine matrices lack layers {missing}")
    default = default_layer(stored, max_layer)
    summary = tuple(summarise_metric(name, vals, stored, default=default, floor_layer=floor_layer)
                    for name, vals in metrics.items())
    checks = norm_confound_check({name: [e.value for e in vals] for name, vals in metrics.items()}, mean_norm,
                                 threshold=norm_threshold)
    return LayersResult(rsa=cross_layer_rsa(cosines.sel(layer=stored)), default_layer=default, summary=summary,
                        norm_check=tuple(checks))
