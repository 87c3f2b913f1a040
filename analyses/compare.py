"""Scale-free comparison of models: RSA between emotion cosine matrices, linear CKA between layers,
and per model the valence/arousal alignment and ``analyze``'s norm-confound check.

Raw magnitudes are never compared: RSA compares the *shapes* of two models' emotion geometries
(Spearman correlation of the off-diagonal cosines, shared emotions only), CKA the similarity
structure of two models' activations on the *same* stimuli (invariant to rotations and isotropic
scaling of either model's space).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from scipy.stats import spearmanr

from emovec_store import Store
from emovec_store.errors import InputError

from . import geometry
from .layers import norm_confound_check
from .source import story_readout
from .stats import Estimate
from .steer import VECTOR_SETS, default_layer, read_vectors
from .transfer import SERIES, TransferResult


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of ``x`` (n, p) and ``y`` (n, q), rows the same stimuli (Kornblith et al. 2019)."""
    x = np.asarray(x, dtype=np.float64) - np.mean(x, axis=0)
    y = np.asarray(y, dtype=np.float64) - np.mean(y, axis=0)
    cross = np.linalg.norm(y.T @ x) ** 2
    denom = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / denom) if denom > 0 else float("nan")


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """Cosines between the rows of ``vectors`` (emotion, hidden)."""
    v = np.asarray(vectors, dtype=np.float64)
    unit = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    out: np.ndarray = unit @ unit.T
    return out


@dataclass(frozen=True)
class RSA:
    """Spearman r between the off-diagonal cosines of two emotion geometries, with a permutation p
    (emotion labels of one side shuffled, ``(k+1)/(n+1)``, one-sided: r at least as large)."""

    r: float
    p: float
    n_emotions: int
    n_permutations: int


def rsa(a: np.ndarray, b: np.ndarray, *, n_permutations: int = 999, seed: int = 0) -> RSA:
    """RSA of two square cosine matrices over the same emotions in the same order."""
    n = a.shape[0]
    if n < 3 or a.shape != b.shape:
        raise InputError(f"RSA needs two cosine matrices over the same 3 or more emotions (got {a.shape}, {b.shape})")
    iu = np.triu_indices(n, 1)
    r = float(spearmanr(a[iu], b[iu])[0])
    rng = np.random.default_rng(seed)
    k = 0
    for _ in range(n_permutations):
        perm = rng.permutation(n)
        k += float(spearmanr(a[iu], b[perm][:, perm][iu])[0]) >= r
    return RSA(r=r, p=(k + 1) / (n_permutations + 1), n_emotions=n, n_permutations=n_permutations)


def shared_stimuli(stores: Sequence[tuple[Store, str]]) -> list[str]:
    """Stimulus ids present in the story readout of every (store, model); refused when there are none."""
    sets = [set(st.dataset_ids(m, story_readout(st, m))) for st, m in stores]
    shared = sorted(set.intersection(*sets))
    if not shared:
        names = ", ".join(f"{st.location}:{m}" for st, m in stores)
        raise InputError(f"the stores share no stimuli ({names}); compare needs the same corpus in each")
    return shared


def pooled_on(store: Store, model: str, stimuli: Sequence[str]) -> xr.DataArray:
    """The story readout of ``model`` restricted to ``stimuli``, ``(layer, stimulus, hidden)``."""
    pooled = store.dataset(model, story_readout(store, model))["pooled"]
    return pooled.sel(stimulus=list(stimuli))


def cka_matrix(a: xr.DataArray, b: xr.DataArray) -> np.ndarray:
    """Linear CKA of every layer of ``a`` against every layer of ``b`` (same stimuli, same order)."""
    xa = [a.isel(layer=i).to_numpy() for i in range(a.sizes["layer"])]
    xb = [b.isel(layer=j).to_numpy() for j in range(b.sizes["layer"])]
    return np.array([[linear_cka(x, y) for y in xb] for x in xa])


def emotion_geometry(store: Store, model: str, emotions: Sequence[str], layer: int | None = None) -> np.ndarray:
    """The cosine matrix of ``model``'s vectors over ``emotions`` at ``layer`` (default 2/3 depth)."""
    ds = read_vectors(store, model)
    name = next(n for n in VECTOR_SETS if n in ds)
    layers = [int(x) for x in ds["layer"].values]
    at = default_layer(layers) if layer is None else layer
    return cosine_matrix(ds[name].sel(layer=at, emotion=list(emotions)).to_numpy())


def shared_emotions(stores: Sequence[tuple[Store, str]]) -> list[str]:
    """Emotions with a vector in every (store, model), in the first one's order."""
    lists = [[str(e) for e in read_vectors(st, m)["emotion"].values] for st, m in stores]
    common = set.intersection(*(set(x) for x in lists))
    return [e for e in lists[0] if e in common]


@dataclass(frozen=True)
class Alignment:
    """Cross-validated valence and arousal alignment of one model's emotion vectors, per layer.

    ``valence``/``arousal``: :func:`geometry.cv_norm_correlation` (r of a leave-one-emotion-out ridge
    direction with the human norm, CI from the null's spread, one-sided permutation p; read r against
    ``null_mean``, which is below 0). ``mean_norm``: the vectors' mean L2 norm per layer (for the
    norm-confound check).
    """

    model: str
    layers: tuple[int, ...]
    emotions: tuple[str, ...]
    valence: tuple[Estimate, ...]
    arousal: tuple[Estimate, ...]
    mean_norm: tuple[float, ...]
    default_layer: int

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "layer": list(self.layers), "emotions": list(self.emotions),
                "default_layer": self.default_layer, "mean_norm": list(self.mean_norm),
                "valence": [e.to_dict() for e in self.valence], "arousal": [e.to_dict() for e in self.arousal]}


def norm_alignment(store: Store, model: str, emotions: Sequence[str], *, n_permutations: int = 999,
                   seed: int = 0) -> Alignment:
    """:class:`Alignment` of ``model``'s stored vectors over ``emotions``, against the store's norms.

    Refused in one line when fewer than 4 of the emotions have both norms.
    """
    ds = read_vectors(store, model)
    name = next(n for n in VECTOR_SETS if n in ds)
    vectors = ds[name].sel(emotion=list(emotions)).transpose("layer", "emotion", "hidden").astype(np.float64).load()
    table = store.emotions
    known = {str(e): i for i, e in enumerate(table["emotion"].values)}
    both = np.isfinite(table["valence"].to_numpy()) & np.isfinite(table["arousal"].to_numpy())
    rated = [e for e in emotions if e in known and both[known[e]]]
    if len(rated) < 4:
        raise InputError(f"{len(rated)} of {len(emotions)} shared emotions have valence and arousal norms in "
                         f"{store.location!r} (need 4 or more)")
    vectors = vectors.sel(emotion=rated)
    streams = np.random.SeedSequence(seed).spawn(2)
    fits = [geometry.cv_norm_correlation(vectors, table[var].sel(emotion=rated), n_permutations=n_permutations,
                                         rng=np.random.default_rng(s))
            for var, s in zip(("valence", "arousal"), streams)]
    norms = np.sqrt((vectors.to_numpy() ** 2).sum(axis=-1)).mean(axis=1)
    layer_ids = tuple(int(x) for x in vectors["layer"].values)
    return Alignment(model=model, layers=layer_ids, emotions=tuple(rated), valence=fits[0], arousal=fits[1],
                     mean_norm=tuple(float(x) for x in norms), default_layer=default_layer(layer_ids))


def norm_check(alignment: Alignment, transfer: TransferResult | None = None) -> list[dict[str, Any]]:
    """``analyze``'s norm-confound check on one model's per-layer metrics: Spearman ρ across layers of
    each metric with the vectors' mean norm, ``|ρ| ≥ 0.8`` flagged. Metrics: the valence and arousal
    alignment r, and (when given) the transfer and within-language accuracies at the vectors' layers."""
    metrics: dict[str, list[float]] = {"cv_valence": [e.value for e in alignment.valence],
                                       "cv_arousal": [e.value for e in alignment.arousal]}
    if transfer is not None:
        at = {layer: i for i, layer in enumerate(transfer.layers)}
        for key in SERIES:
            values = getattr(transfer, key)
            metrics[f"{key}_accuracy"] = [values[at[layer]].value if layer in at else float("nan")
                                          for layer in alignment.layers]
    return norm_confound_check(metrics, list(alignment.mean_norm))
