"""Geometry of emotion vectors against human norms: cosines, quadrants, PCA, valence/arousal, RSA.

Every number here is scale-free (cosines, correlations, adjusted Rand), so it can be compared across
layers and models; the raw mean vector norm is kept beside them as the diagnostic the norm-confound
check needs (field-notes §1.5: raw-unit PCA separations measured scale, not geometry).

Resampling, shared by the functions below:

- **Bootstrap** (:func:`bootstrap_cosines`): stories are resampled *within emotion*, class means
  recomputed, the neutral components projected out of the story rows (denoising is linear), the
  vectors rebuilt with the recipe they were made with, then unit-normalised; a replicate is its cosine
  matrix, from which cohesion, PCA scores and RSA are recomputed. The same story draws are used for
  every layer. CIs are 95 % percentile intervals. Replicate class means carry the sampling noise
  twice (the observed noise plus the resampling), which lowers cosines and |r|: these intervals lean
  low, and with noisy class means they can sit below the estimate; they never flatter it.
- **Permutations**: drawn once per analysis and reused for every layer; p-values are
  ``(k + 1) / (n + 1)``. Quadrant labels are shuffled across emotions for cohesion and k-means; human
  norms are shuffled across emotions for PC correlations, the leave-one-emotion-out regression (rerun
  in full per shuffle, in closed form; its CI also comes from that null, see
  :func:`cv_norm_correlation`) and RSA (Mantel: the emotion order of the human distance matrix).

Only emotions with finite valence *and* arousal enter the norm analyses; ``n`` on those estimates is
that number of emotions. BLAS runs single-threaded inside these functions (see :func:`_one_thread`).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import xarray as xr
from scipy.stats import rankdata
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from emovec_store.errors import InputError

from ._common import as_labels, one_thread
from .budget import BLOCK_SHARE, DEFAULT_LAYER_BUDGET_MB, SLICE_SHARE, as_numpy, fits, row_blocks, share_rows
from .stats import (
    CI_LEVEL,
    DEFAULT_BOOTSTRAP,
    DEFAULT_PERMUTATIONS,
    Alternative,
    Estimate,
    as_rng,
    estimate_from_replicates,
    json_float,
    permutation_p,
)
from .vectors import Baseline, check_pooled

VECTOR_DIMS = ("layer", "emotion", "hidden")
N_COMPONENTS = 5
N_INIT = 10
# ridge penalties, relative to the mean non-zero eigenvalue of each training kernel
RIDGE_ALPHAS = tuple(float(a) for a in 10.0 ** np.linspace(-3, 3, 13))
_CONSISTENCY_TOL = 1e-4
_BLOCK = 250


# ---------------------------------------------------------------- small numpy kernels

def _pearson(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """Pearson r along ``axis`` (broadcasting); NaN where either side has no variance."""
    a = a - a.mean(axis=axis, keepdims=True)
    b = b - b.mean(axis=axis, keepdims=True)
    num = (a * b).sum(axis=axis)
    den = np.sqrt((a * a).sum(axis=axis) * (b * b).sum(axis=axis))
    num, den = np.broadcast_arrays(num, den)
    return np.asarray(np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 1e-300))


def _standardise(x: np.ndarray, axis: int) -> np.ndarray:
    """Centred, unit population-variance along ``axis``; zeros where there is no variance."""
    x = x - x.mean(axis=axis, keepdims=True)
    sd = np.sqrt((x * x).mean(axis=axis, keepdims=True))
    return np.asarray(np.divide(x, sd, out=np.zeros_like(x), where=sd > 1e-300))


def _cosines(v: np.ndarray) -> np.ndarray:
    """Cosine matrices of row vectors: ``(..., n, d)`` → ``(..., n, n)``; zero vectors give 0."""
    norm = np.sqrt((v * v).sum(axis=-1, keepdims=True))
    u = np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)
    return np.asarray(u @ np.swapaxes(u, -1, -2))


def _gram_to_cosine(g: np.ndarray) -> np.ndarray:
    """A Gram matrix stack ``(..., n, n)`` → cosines (rows of zero norm give 0)."""
    d = np.sqrt(np.clip(np.diagonal(g, axis1=-2, axis2=-1), 0, None))
    outer = d[..., :, None] * d[..., None, :]
    return np.asarray(np.divide(g, outer, out=np.zeros_like(g), where=outer > 0))


def _permutations(n: int, n_permutations: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_permutations, n)`` independent permutations of ``range(n)``."""
    return rng.permuted(np.tile(np.arange(n), (n_permutations, 1)), axis=1)


def _comb2(x: np.ndarray) -> np.ndarray:
    return np.asarray(x * (x - 1) / 2.0)


def _ari(clusters: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Adjusted Rand index of one clustering ``(n,)`` against label rows ``(p, n)`` (integer codes).

    Same formula as :func:`sklearn.metrics.adjusted_rand_score`, vectorised over the rows: the
    marginals are fixed under label permutation, only the contingency table changes.
    """
    labels = np.atleast_2d(labels)
    p, n = labels.shape
    k, q = int(clusters.max()) + 1, int(labels.max()) + 1
    flat = (np.arange(p)[:, None] * (k * q) + clusters[None, :] * q + labels).ravel()
    table = np.bincount(flat, minlength=p * k * q).reshape(p, k * q).astype(np.float64)
    index = _comb2(table).sum(axis=1)
    sum_a = _comb2(np.bincount(clusters).astype(np.float64)).sum()
    sum_b = _comb2(np.bincount(labels[0]).astype(np.float64)).sum()
    expected = sum_a * sum_b / (n * (n - 1) / 2.0)
    top = (sum_a + sum_b) / 2.0
    if top == expected:
        return np.full(p, np.nan)
    return np.asarray((index - expected) / (top - expected))


def _estimate(value: float, n: int, *, replicates: np.ndarray | None = None, null: np.ndarray | None = None,
              alternative: Alternative = "greater") -> Estimate:
    """An :class:`Estimate` tolerant of undefined statistics (NaN value, no finite null or replicates)."""
    if not np.isfinite(value):
        return Estimate(value=float("nan"), n=int(n))
    if null is not None and not np.isfinite(null).any():
        null = None
    if replicates is not None and np.isfinite(replicates).any():
        return estimate_from_replicates(value, replicates, n=n, null=null, alternative=alternative)
    if null is None:
        return Estimate(value=float(value), n=int(n))
    finite = null[np.isfinite(null)]
    return Estimate(value=float(value), n=int(n), p=permutation_p(value, null, alternative),
                    n_permutations=int(null.size), null_mean=float(finite.mean()))


# ---------------------------------------------------------------- inputs

def _check_vectors(vectors: xr.DataArray) -> None:
    if set(vectors.dims) != set(VECTOR_DIMS):
        raise InputError(f"expected emotion vectors with dims {VECTOR_DIMS}, got {vectors.dims}")
    if vectors.sizes["emotion"] < 3:
        raise InputError(f"geometry needs at least 3 emotions, got {vectors.sizes['emotion']}")


def _values(vectors: xr.DataArray) -> np.ndarray:
    """The vectors as float64 numpy ``(layer, emotion, hidden)`` (computes dask input)."""
    return np.asarray(vectors.transpose(*VECTOR_DIMS).values, dtype=np.float64)


def _names(vectors: xr.DataArray) -> list[str]:
    return [str(e) for e in vectors["emotion"].values.tolist()]


def _aligned(values: xr.DataArray | Sequence[Any] | np.ndarray, names: list[str], fill: Any) -> np.ndarray:
    """Per-emotion values in the order of ``names``: a DataArray (emotion,) aligned by name, or a sequence."""
    if isinstance(values, xr.DataArray):
        if values.dims != ("emotion",):
            raise InputError(f"expected a per-emotion array with dims ('emotion',), got {values.dims}")
        return np.asarray(values.reindex(emotion=names, fill_value=fill).values)
    out = np.asarray(list(values))
    if out.shape != (len(names),):
        raise InputError(f"expected {len(names)} per-emotion values, got {out.shape[0] if out.ndim else 0}")
    return out


def _quadrant_codes(quadrants: xr.DataArray | Sequence[str] | np.ndarray,
                    names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(keep, codes)``: indices of emotions with a quadrant and their integer quadrant codes."""
    q = as_labels(_aligned(quadrants, names, ""))
    keep = np.flatnonzero(q != "")
    _, codes = np.unique(q[keep], return_inverse=True)
    return keep, codes.astype(np.int64)


def _norm_values(norm: xr.DataArray | Sequence[float] | np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(keep, y)``: indices of emotions with a finite norm and the norm values; ≥ 4 required."""
    y = _aligned(norm, names, np.nan).astype(np.float64)
    keep = np.flatnonzero(np.isfinite(y))
    if keep.size < 4:
        raise InputError(f"{keep.size} emotions have this norm (need ≥ 4)")
    return keep, y[keep]


def _replicate_values(replicates: xr.DataArray | None, vectors: xr.DataArray) -> np.ndarray | None:
    """Bootstrap cosines as numpy ``(layer, replicate, emotion, emotion_b)``, checked against ``vectors``."""
    if replicates is None:
        return None
    dims = ("layer", "replicate", "emotion", "emotion_b")
    if set(replicates.dims) != set(dims):
        raise InputError(f"expected bootstrap cosines with dims {dims}, got {replicates.dims}")
    if (list(replicates["layer"].values) != list(vectors["layer"].values)
            or [str(e) for e in replicates["emotion"].values.tolist()] != _names(vectors)):
        raise InputError("bootstrap cosines do not match the vectors' layers and emotions")
    return np.asarray(replicates.transpose(*dims).values)


# ---------------------------------------------------------------- cosines and the bootstrap

def cosine_matrix(vectors: xr.DataArray) -> xr.DataArray:
    """Cosine similarity between emotion vectors, per layer.

    Parameters
    ----------
    vectors : DataArray, dims (layer, emotion, hidden)

    Returns
    -------
    DataArray, dims (layer, emotion, emotion_b), float64: symmetric, unit diagonal (0 for a zero vector).
    """
    _check_vectors(vectors)
    names = _names(vectors)
    return xr.DataArray(_cosines(_values(vectors)), dims=("layer", "emotion", "emotion_b"),
                        coords={"layer": vectors["layer"].values, "emotion": names, "emotion_b": names})


def _story_codes(stories: xr.DataArray, names: list[str]) -> np.ndarray:
    """The emotion code of every story row (-1: not one of the vectors' emotions), in stored order."""
    check_pooled(stories)
    labels = as_labels(stories["emotion"].values)
    index = {e: i for i, e in enumerate(names)}
    codes = np.array([index.get(lab, -1) for lab in labels], dtype=np.int64)
    counts = np.bincount(codes[codes >= 0], minlength=len(names))
    if (counts == 0).any():
        missing = [e for e, c in zip(names, counts) if c == 0]
        raise InputError(f"no story of emotion {', '.join(missing)} among the stories given for the bootstrap")
    return codes


def _infer_baseline(v: np.ndarray, means: np.ndarray, layer: int) -> Baseline:
    """Which recipe made ``v`` from the (projected) class means, checking that they match at all.

    Both recipes give ``v_e − P m_e`` equal for every emotion: ``−P mean_e m_e`` for ``mean``, ``−P n̄``
    for ``neutral`` (the neutral mean).
    """
    offset = v - means
    scale = max(float(np.linalg.norm(v)), 1e-300)
    spread = float(np.linalg.norm(offset - offset.mean(axis=0))) / scale
    if spread > _CONSISTENCY_TOL:
        raise InputError(f"the stories (and neutral components) do not reproduce the vectors at layer {layer} "
                         f"(relative error {spread:.2g}): pass the story rows and components they were built from")
    gap = float(np.linalg.norm(offset + means.mean(axis=0))) / scale
    return "mean" if gap <= _CONSISTENCY_TOL else "neutral"


def _count_dtype(size: int) -> np.dtype[Any]:
    """The smallest unsigned dtype that holds a count of up to ``size`` draws."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if size <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def _replicate_counts(sizes: np.ndarray, n_bootstrap: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Per emotion, ``(n_bootstrap, size)``: how often each of its stories (in stored order) is drawn in
    each replicate, in the smallest unsigned dtype that holds ``size`` (1 byte per story and replicate
    for groups of up to 255 stories). The draws are those of :func:`stratified_bootstrap_indices` on
    the emotion codes (same generator calls, same order), counted one emotion at a time so that no
    ``(n_bootstrap, all stories)`` index array is held."""
    out = []
    for size in sizes:
        drawn = rng.integers(0, size, size=(n_bootstrap, size))
        flat = (np.arange(n_bootstrap)[:, None] * size + drawn).ravel()
        out.append(np.bincount(flat, minlength=n_bootstrap * size).reshape(n_bootstrap, size)
                   .astype(_count_dtype(int(size))))
    return out


def _weights(counts: np.ndarray, size: int) -> np.ndarray:
    """Replicate weights ``(count − 1) / size`` of some stories (float64): the change of a class mean
    in a replicate is ``weights @ stories``."""
    return np.asarray((counts - 1.0) / size)


def bootstrap_cosines(vectors: xr.DataArray, stories: xr.DataArray, *, components: xr.DataArray | None = None,
                      baseline: Baseline | None = None, n_bootstrap: int = DEFAULT_BOOTSTRAP,
                      rng: int | np.random.Generator | None = None,
                      budget_mb: float = DEFAULT_LAYER_BUDGET_MB) -> xr.DataArray:
    """Cosine matrices of emotion vectors rebuilt from stories resampled within emotion.

    Per replicate the stories of every emotion are drawn with replacement (group sizes kept, the same
    draws for every layer), the neutral ``components`` are projected out of the story rows, class
    means recomputed and the vectors rebuilt: ``v*_e = v_e + P(m*_e − m_e)`` minus the mean over
    emotions of that change for ``baseline="mean"`` (identical to rerunning the recipe).

    Memory (:mod:`.budget`): the draws are kept as counts (1–2 bytes per story and replicate) and
    turned into float64 weights one block of replicates at a time, the block sized so that its
    rebuilt vectors (replicate × emotion × hidden × 8 bytes) take at most a quarter of ``budget_mb``.
    A layer whose stories fit ``budget_mb`` as float64 is read once in its stored dtype and converted
    one emotion at a time; a larger one is never held: each block of replicates streams over the
    layer one stored chunk at a time, in float64 slices of a quarter of the budget. Both give the
    same replicates (up to the order of floating-point sums, ~1e-15).

    Parameters
    ----------
    vectors : DataArray, dims (layer, emotion, hidden): the emotion vectors built from ``stories``.
    stories : DataArray, dims (layer, stimulus, hidden), with an ``emotion`` coordinate; rows whose
        emotion is not one of the vectors' are ignored. Dask input is computed one layer (within the
        budget) or one chunk (over it) at a time.
    components : DataArray, dims (layer, component, hidden), orthonormal rows (zero rows allowed): the
        neutral components projected out of the vectors (None: raw vectors).
    baseline : ``"mean"`` or ``"neutral"``, the recipe of the vectors; None infers it per layer.
    n_bootstrap : number of replicates.
    rng : seed or Generator.
    budget_mb : the memory budget (MB of one float64 layer of ``stories``).

    Returns
    -------
    DataArray, dims (layer, replicate, emotion, emotion_b), float32.

    Raises
    ------
    InputError
        When an emotion has no story, or when the stories and components do not reproduce the vectors.
    """
    _check_vectors(vectors)
    if baseline not in (None, "mean", "neutral"):
        raise InputError(f"baseline must be 'mean', 'neutral' or None, got {baseline!r}")
    if n_bootstrap < 1:
        raise InputError(f"n_bootstrap must be ≥ 1, got {n_bootstrap}")
    names = _names(vectors)
    codes = _story_codes(stories, names)
    members = [np.flatnonzero(codes == e) for e in range(len(names))]
    sizes = np.asarray([m.size for m in members])
    counts = _replicate_counts(sizes, n_bootstrap, as_rng(rng))
    v_all = _values(vectors)
    layers = vectors["layer"].values
    hidden = v_all.shape[-1]
    step = min(_BLOCK, share_rows(len(names) * hidden * 8, budget_mb, BLOCK_SHARE))
    blocks = [(a, min(a + step, n_bootstrap)) for a in range(0, n_bootstrap, step)]
    in_memory = fits(stories, budget_mb)
    position = np.empty(codes.size, dtype=np.int64)  # each story's column in its emotion's counts
    for m in members:
        position[m] = np.arange(m.size)
    out = np.empty((len(layers), n_bootstrap, len(names), len(names)), dtype=np.float32)
    for i, layer in enumerate(layers):
        c = None if components is None else np.asarray(
            components.sel(layer=layer).transpose("component", "hidden").values, dtype=np.float64)
        x = stories.sel(layer=layer).transpose("stimulus", "hidden").data
        if in_memory:
            x = as_numpy(x)  # one read, in the stored dtype
        recipe: Baseline | None = None
        for start, stop in blocks:
            with one_thread():
                if in_memory:
                    rep, sums = _replicate_changes_in_memory(x, members, counts, start, stop, c)
                else:
                    rep, sums = _replicate_changes_streamed(x, codes, position, counts, sizes, start, stop, c,
                                                            share_rows(hidden * 8, budget_mb, SLICE_SHARE))
                if recipe is None:
                    inferred = _infer_baseline(v_all[i], sums / sizes[:, None], int(layer))
                    recipe = baseline or inferred
                if recipe == "mean":
                    rep -= rep.mean(axis=1, keepdims=True)
                rep += v_all[i]
                out[i, start:stop] = _gram_to_cosine(rep @ np.swapaxes(rep, -1, -2))
    return xr.DataArray(out, dims=("layer", "replicate", "emotion", "emotion_b"),
                        coords={"layer": layers, "emotion": names, "emotion_b": names})


def _project(x: np.ndarray, c: np.ndarray | None) -> np.ndarray:
    """``x`` (float64, modified in place) with the components ``c`` projected out of its rows."""
    if c is not None:
        x -= (x @ c.T) @ c
    return x


def _replicate_changes_in_memory(x: np.ndarray, members: list[np.ndarray], counts: list[np.ndarray], start: int,
                                 stop: int, c: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Replicates ``start:stop``: the change of every class mean ``(replicate, emotion, hidden)`` and the
    sums of the projected stories per emotion, from a layer held in its stored dtype (converted to
    float64 one emotion at a time)."""
    rep = np.empty((stop - start, len(members), x.shape[1]))
    sums = np.empty((len(members), x.shape[1]))
    for e, rows in enumerate(members):
        xe = _project(x[rows].astype(np.float64), c)
        rep[:, e, :] = _weights(counts[e][start:stop], rows.size) @ xe
        sums[e] = xe.sum(axis=0)
    return rep, sums


def _replicate_changes_streamed(x: Any, codes: np.ndarray, position: np.ndarray, counts: list[np.ndarray],
                                sizes: np.ndarray, start: int, stop: int, c: np.ndarray | None,
                                step: int) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`_replicate_changes_in_memory`, from a layer read one chunk at a time and converted to
    float64 ``step`` rows at a time; the class-mean changes are summed over the slices."""
    rep = np.zeros((stop - start, sizes.size, x.shape[1]))
    sums = np.zeros((sizes.size, x.shape[1]))
    for first, rows in row_blocks(x, step):
        code = codes[first:first + rows.shape[0]]
        keep = np.flatnonzero(code >= 0)
        xs = _project(rows[keep].astype(np.float64), c)
        code, column = code[keep], position[first:first + rows.shape[0]][keep]
        for e in np.unique(code):
            mine = code == e
            rep[:, e, :] += _weights(counts[e][start:stop, column[mine]], int(sizes[e])) @ xs[mine]
            sums[e] += xs[mine].sum(axis=0)
    return rep, sums


# ---------------------------------------------------------------- quadrants

def _upper(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n, k=1)


def _cohesion_values(cos: np.ndarray, same: np.ndarray) -> np.ndarray:
    """Mean within- minus mean between-quadrant cosine; ``cos`` (..., pairs), ``same`` (pairs,) or (p, pairs)."""
    n_within = same.sum(axis=-1)
    n_between = same.shape[-1] - n_within
    within = cos @ same.T.astype(np.float64)
    total = cos.sum(axis=-1, keepdims=same.ndim == 2)
    return np.asarray(within / n_within - (total - within) / n_between)


def quadrant_cohesion(vectors: xr.DataArray, quadrants: xr.DataArray | Sequence[str] | np.ndarray, *,
                      n_permutations: int = DEFAULT_PERMUTATIONS, rng: int | np.random.Generator | None = None,
                      replicates: xr.DataArray | None = None) -> tuple[Estimate, ...]:
    """Within- minus between-quadrant mean cosine per layer, with a permutation p and a bootstrap CI.

    Pairs are the upper triangle of the cosine matrix over emotions that have a quadrant. The null
    shuffles quadrant labels across those emotions (the same shuffles for every layer); p is
    one-sided (cohesion greater than chance).

    Parameters
    ----------
    vectors : DataArray, dims (layer, emotion, hidden)
    quadrants : DataArray, dims (emotion,), str ("" = unknown), or one str per emotion in vector order.
    n_permutations : label shuffles.
    rng : seed or Generator.
    replicates : DataArray, dims (layer, replicate, emotion, emotion_b), from :func:`bootstrap_cosines`
        (None: no CI).

    Returns
    -------
    One :class:`Estimate` per layer (``n`` = emotions with a quadrant).
    """
    _check_vectors(vectors)
    keep, codes = _quadrant_codes(quadrants, _names(vectors))
    iu = _upper(keep.size)
    same = codes[iu[0]] == codes[iu[1]]
    if same.all() or not same.any():
        raise InputError("quadrant cohesion needs at least two quadrants and one quadrant with two emotions")
    sub = np.ix_(keep, keep)
    cos = np.asarray(cosine_matrix(vectors).values)[(slice(None),) + sub][:, iu[0], iu[1]]
    observed = _cohesion_values(cos, same)
    perms = _permutations(keep.size, n_permutations, as_rng(rng))
    shuffled = codes[perms]
    null = _cohesion_values(cos, shuffled[:, iu[0]] == shuffled[:, iu[1]])  # (layer, permutation)
    reps = _replicate_values(replicates, vectors)
    out = []
    for i in range(cos.shape[0]):
        boot = None
        if reps is not None:
            boot = _cohesion_values(reps[i].astype(np.float64)[(slice(None),) + sub][:, iu[0], iu[1]], same)
        out.append(_estimate(float(observed[i]), keep.size, replicates=boot, null=null[i]))
    return tuple(out)


def kmeans_ari(vectors: xr.DataArray, quadrants: xr.DataArray | Sequence[str] | np.ndarray, *, seed: int = 0,
               n_permutations: int = DEFAULT_PERMUTATIONS, n_init: int = N_INIT) -> tuple[Estimate, ...]:
    """k-means of the unit vectors (k = number of quadrants) against the quadrants: adjusted Rand per layer.

    The clustering is fitted once per layer (``n_init`` restarts, ``random_state`` from ``seed``); the
    null shuffles quadrant labels across emotions against that clustering (one-sided p). No CI: a
    k-means refit per bootstrap replicate and layer is not affordable, and the ARI of a discrete
    partition has no well-behaved percentile interval at 24 points.

    Parameters
    ----------
    vectors : DataArray, dims (layer, emotion, hidden)
    quadrants : DataArray, dims (emotion,), str ("" = unknown), or one str per emotion in vector order.
    seed : seeds k-means and the label shuffles.
    n_permutations : label shuffles.
    n_init : k-means restarts.

    Returns
    -------
    One :class:`Estimate` per layer (``n`` = emotions with a quadrant; NaN value where the layer has
    fewer distinct vectors than quadrants).
    """
    _check_vectors(vectors)
    keep, codes = _quadrant_codes(quadrants, _names(vectors))
    k = int(codes.max()) + 1 if codes.size else 0
    if k < 2 or keep.size <= k:
        raise InputError(f"k-means against quadrants needs ≥ 2 quadrants and more emotions than quadrants "
                         f"({keep.size} emotions, {k} quadrants)")
    seeds = np.random.SeedSequence(seed).spawn(2)
    null_labels = codes[_permutations(keep.size, n_permutations, np.random.default_rng(seeds[1]))]
    state = int(seeds[0].generate_state(1)[0])
    v = _values(vectors)[:, keep]
    norm = np.sqrt((v * v).sum(axis=-1, keepdims=True))
    u = np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)
    out = []
    for i in range(u.shape[0]):
        if np.unique(np.round(u[i], 12), axis=0).shape[0] < k:
            out.append(Estimate(value=float("nan"), n=keep.size))
            continue
        with one_thread():
            clusters = KMeans(n_clusters=k, n_init=n_init, random_state=state).fit_predict(u[i])
        observed = float(_ari(clusters.astype(np.int64), codes[None, :])[0])
        out.append(_estimate(observed, keep.size, null=_ari(clusters.astype(np.int64), null_labels)))
    return tuple(out)


# ---------------------------------------------------------------- PCA and the norms

@dataclass(frozen=True)
class UnitPCA:
    """PCA of unit-normalised emotion vectors (centred across emotions), per layer.

    ``scores`` dims (layer, emotion, component); ``explained`` (layer, component): explained variance
    ratio. ``component`` is 1-based. Signs are deterministic (sklearn's ``svd_flip`` on the loadings:
    the largest-magnitude loading of each component is positive).
    """

    scores: xr.DataArray
    explained: xr.DataArray


def unit_pca(vectors: xr.DataArray, n_components: int = N_COMPONENTS) -> UnitPCA:
    """PCA of the unit-normalised vectors of every layer.

    Parameters
    ----------
    vectors : DataArray, dims (layer, emotion, hidden)
    n_components : components kept (capped at emotions − 1 and hidden).

    Returns
    -------
    :class:`UnitPCA` with scores (layer, emotion, component) and explained (layer, component).
    """
    _check_vectors(vectors)
    v = _values(vectors)
    norm = np.sqrt((v * v).sum(axis=-1, keepdims=True))
    u = np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)
    k = min(n_components, v.shape[1] - 1, v.shape[2])
    scores = np.empty((v.shape[0], v.shape[1], k))
    ratio = np.empty((v.shape[0], k))
    with one_thread():
        for i in range(v.shape[0]):
            pca = PCA(n_components=k, svd_solver="full").fit(u[i])
            scores[i] = pca.transform(u[i])
            ratio[i] = pca.explained_variance_ratio_
    layer = vectors["layer"].values
    comp = np.arange(1, k + 1)
    return UnitPCA(scores=xr.DataArray(scores, dims=("layer", "emotion", "component"),
                                       coords={"layer": layer, "emotion": _names(vectors), "component": comp}),
                   explained=xr.DataArray(ratio, dims=("layer", "component"),
                                          coords={"layer": layer, "component": comp}))


def _replicate_scores(cos: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """PCA scores of replicate unit vectors from their cosines, signs aligned to the observed scores.

    ``cos`` (replicate, n, n), ``observed`` (n, k) → (replicate, n, k). The doubly centred cosine matrix
    is the Gram matrix of the centred unit vectors, so its eigenvectors times √eigenvalue are the
    scores. Components keep their variance order; each is flipped to correlate positively with the
    observed component of the same rank.
    """
    c = cos - cos.mean(axis=-1, keepdims=True) - cos.mean(axis=-2, keepdims=True) \
        + cos.mean(axis=(-1, -2), keepdims=True)
    lam, vec = np.linalg.eigh(c)
    k = observed.shape[1]
    scores = vec[..., ::-1][..., :k] * np.sqrt(np.clip(lam[..., ::-1][..., None, :k], 0, None))
    sign = np.where(np.einsum("bnk,nk->bk", scores, observed) < 0, -1.0, 1.0)
    return np.asarray(scores * sign[:, None, :])


def bootstrap_pca_scores(replicates: xr.DataArray, pca: UnitPCA) -> xr.DataArray:
    """PCA scores of every bootstrap replicate, aligned to the observed PCA.

    A replicate's unit vectors are not available, but their cosine matrix is all a centred PCA needs:
    the doubly centred cosine matrix is the Gram matrix of the centred unit vectors, and its
    eigenvectors times √eigenvalue are the scores. Components keep their variance order (a replicate
    in which PC1 and PC2 swap counts against the PC, as it should), and each is sign-flipped to
    correlate positively with the observed component of the same rank.

    Parameters
    ----------
    replicates : DataArray, dims (layer, replicate, emotion, emotion_b), from :func:`bootstrap_cosines`.
    pca : the :func:`unit_pca` of the vectors the replicates resample.

    Returns
    -------
    DataArray, dims (layer, replicate, emotion, component), float64.
    """
    scores = pca.scores.transpose("layer", "emotion", "component")
    if (list(replicates["layer"].values) != list(scores["layer"].values)
            or replicates["emotion"].values.tolist() != scores["emotion"].values.tolist()):
        raise InputError("bootstrap cosines do not match the PCA's layers and emotions")
    cos = replicates.transpose("layer", "replicate", "emotion", "emotion_b").values
    observed = np.asarray(scores.values)
    with one_thread():
        out = np.stack([_replicate_scores(np.asarray(cos[i], dtype=np.float64), observed[i])
                        for i in range(observed.shape[0])])
    return xr.DataArray(out, dims=("layer", "replicate", "emotion", "component"),
                        coords={"layer": scores["layer"].values, "emotion": scores["emotion"].values,
                                "component": scores["component"].values})


def _safe_max(a: np.ndarray, axis: int) -> np.ndarray:
    """``nanmax`` that gives NaN for an all-NaN slice instead of warning."""
    top = np.where(np.isnan(a), -np.inf, a).max(axis=axis)
    return np.where(np.isneginf(top), np.nan, top)


@dataclass(frozen=True)
class PCNorm:
    """Correlation of principal components with one human norm, per layer.

    ``pc1``/``pc2``: Pearson r of PC1/PC2 scores with the norm, oriented so the observed r ≥ 0 (a PC's
    sign is arbitrary); the CI's replicates carry the same orientation, the p-value is two-sided
    (|r| of shuffled norms), ``null_mean`` is the mean |r| under the null. ``best_pc`` (1-based) is the
    PC among the top five with the largest |r| (descriptive), ``best`` that |r| with a CI of the same
    maximum over replicates and a p from a null that also takes the maximum over the five PCs.
    """

    pc1: tuple[Estimate, ...]
    pc2: tuple[Estimate, ...]
    best_pc: tuple[int, ...]
    best: tuple[Estimate, ...]

    @classmethod
    def concat(cls, parts: Sequence[PCNorm]) -> PCNorm:
        """Blocks of layers (in layer order) as one result."""
        return cls(pc1=_joined(p.pc1 for p in parts), pc2=_joined(p.pc2 for p in parts),
                   best_pc=_joined(p.best_pc for p in parts), best=_joined(p.best for p in parts))

    def to_dict(self) -> dict[str, Any]:
        """``{"pc1": [Estimate], "pc2": [Estimate], "best_pc": [int], "best": [Estimate]}``, per layer."""
        return {"pc1": [e.to_dict() for e in self.pc1], "pc2": [e.to_dict() for e in self.pc2],
                "best_pc": list(self.best_pc), "best": [e.to_dict() for e in self.best]}


def pc_norm_correlation(vectors: xr.DataArray, norm: xr.DataArray | Sequence[float] | np.ndarray, *,
                        n_permutations: int = DEFAULT_PERMUTATIONS, rng: int | np.random.Generator | None = None,
                        pca: UnitPCA | None = None, boot_scores: xr.DataArray | None = None) -> PCNorm:
    """Pearson r of the unit-vector PCs with a human norm (valence or arousal), per layer.

    PCA is fitted on all emotions (the geometry); r is computed over the emotions with a finite norm.
    The null shuffles the norm across those emotions (the same shuffles for every layer and PC).

    Parameters
    ----------
    vectors : DataArray, dims (layer, emotion, hidden)
    norm : DataArray, dims (emotion,), float (NaN = unknown), or one value per emotion in vector order.
    n_permutations : norm shuffles.
    rng : seed or Generator.
    pca : the :func:`unit_pca` of ``vectors`` when already computed.
    boot_scores : DataArray, dims (layer, replicate, emotion, component), from
        :func:`bootstrap_pca_scores` (None: no CIs).

    Returns
    -------
    :class:`PCNorm`; every estimate has ``n`` = emotions with the norm (see the class for orientation).

    Raises
    ------
    InputError
        When fewer than 4 emotions have the norm.
    """
    _check_vectors(vectors)
    keep, y = _norm_values(norm, _names(vectors))
    pca = unit_pca(vectors) if pca is None else pca
    scores = np.asarray(pca.scores.transpose("layer", "emotion", "component").values)  # (L, n, k)
    k = scores.shape[2]
    observed = _pearson(scores[:, keep, :], y[None, :, None], axis=1)  # (L, k)
    zy = _standardise(y[_permutations(keep.size, n_permutations, as_rng(rng))], axis=1)  # (P, m)
    null = np.abs(np.einsum("pm,lmk->plk", zy, _standardise(scores[:, keep, :], axis=1)) / keep.size)
    boot = None
    if boot_scores is not None:
        reps = np.asarray(boot_scores.transpose("layer", "replicate", "emotion", "component").values)
        if reps.shape[0] != scores.shape[0] or reps.shape[2:] != scores.shape[1:]:
            raise InputError("bootstrap scores do not match the vectors' layers, emotions and components")
        boot = _pearson(reps[:, :, keep, :], y[None, None, :, None], axis=2)  # (L, B, k)
    orient = np.where(observed < 0, -1.0, 1.0)
    pcs: list[list[Estimate]] = [[], []]
    best_pc, best = [], []
    for i in range(scores.shape[0]):
        for j in range(min(2, k)):
            pcs[j].append(_estimate(abs(float(observed[i, j])), keep.size, null=null[:, i, j],
                                    replicates=None if boot is None else orient[i, j] * boot[i, :, j]))
        magnitude = np.abs(observed[i])
        if np.isfinite(magnitude).any():
            j_best = int(np.nanargmax(magnitude))
            best_pc.append(j_best + 1)
            best.append(_estimate(float(magnitude[j_best]), keep.size, null=_safe_max(null[:, i, :], axis=1),
                                  replicates=None if boot is None else _safe_max(np.abs(boot[i]), axis=1)))
        else:
            best_pc.append(0)
            best.append(Estimate(value=float("nan"), n=keep.size))
    if k < 2:
        pcs[1] = [Estimate(value=float("nan"), n=keep.size) for _ in best]
    return PCNorm(pc1=tuple(pcs[0]), pc2=tuple(pcs[1]), best_pc=tuple(best_pc), best=tuple(best))


def _loeo_projections(kernel: np.ndarray, targets: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Leave-one-emotion-out ridge: each held-out emotion projected on the direction fitted without it.

    ``kernel`` (n, n) linear kernel of the unit vectors; ``targets`` (n, c): columns are norm vectors
    (observed and shuffled); ``alphas`` relative penalties. For each held-out emotion the training
    kernel is centred (unpenalised intercept), the penalty minimising the exact closed-form LOO error
    over the training emotions is chosen per column, and the held-out emotion's centred projection on
    the fitted direction, ``(u_i − ū_train)·β``, is returned: (n, c).
    """
    n = kernel.shape[0]
    m = n - 1
    out = np.zeros_like(targets)
    eye = np.eye(m)
    columns = np.arange(targets.shape[1])
    for i in range(n):
        train = np.delete(np.arange(n), i)
        k_t = kernel[np.ix_(train, train)]
        row_mean = k_t.mean(axis=0)
        grand = row_mean.mean()
        k_c = k_t - row_mean[:, None] - row_mean[None, :] + grand
        k_i = kernel[train, i] - row_mean - kernel[train, i].mean() + grand
        lam, q = np.linalg.eigh(k_c)
        lam = np.clip(lam, 0, None)
        scale = lam.sum() / max(m - 1, 1)
        if scale <= 0:
            continue
        pen = np.asarray(alphas) * scale  # (A,)
        hat = (q[None] * (lam[None, :] / (lam[None, :] + pen[:, None]))[:, None, :]) @ q.T + 1.0 / m  # (A, m, m)
        resid = (eye[None] - hat) / (1.0 - np.diagonal(hat, axis1=1, axis2=2))[:, :, None]
        y_t = targets[train] - targets[train].mean(axis=0)
        loo = (resid.reshape(-1, m) @ y_t).reshape(len(pen), m, -1)
        choice = np.argmin(np.einsum("amc,amc->ac", loo, loo), axis=0)  # (c,)
        weights = ((q.T @ k_i)[None, :] / (lam[None, :] + pen[:, None])) @ q.T  # (A, m)
        out[i] = (weights @ y_t)[choice, columns]
    return out


def _null_shift_ci(value: float, null: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """CI of an r from the spread of its permutation null on Fisher's z scale, shifted to the observed z.

    ``[tanh(z − (q_hi − z̄₀)), tanh(z − (q_lo − z̄₀))]`` with ``q`` the null's z quantiles and ``z̄₀`` its mean.
    """
    z = np.arctanh(np.clip(value, -1 + 1e-9, 1 - 1e-9))
    zn = np.arctanh(np.clip(null[np.isfinite(null)], -1 + 1e-9, 1 - 1e-9))
    lo, hi = np.quantile(zn, [(1 - level) / 2, (1 + level) / 2])
    centre = zn.mean()
    return float(np.tanh(z - (hi - centre))), float(np.tanh(z - (lo - centre)))


def cv_norm_correlation(vectors: xr.DataArray, norm: xr.DataArray | Sequence[float] | np.ndarray, *,
                        n_permutations: int = DEFAULT_PERMUTATIONS, rng: int | np.random.Generator | None = None,
                        alphas: Sequence[float] = RIDGE_ALPHAS) -> tuple[Estimate, ...]:
    """Out-of-sample r of a norm direction fitted by leave-one-emotion-out ridge, per layer.

    For each held-out emotion a ridge regression (with intercept) from the unit vectors of the other
    emotions to the norm gives a direction; its penalty is chosen by exact LOO error among those
    training emotions only, from ``alphas`` (relative to the mean non-zero eigenvalue of the training
    kernel). The estimate is Pearson r, across emotions, between each held-out emotion's projection
    on the direction fitted without it and its norm: no direction or PC is chosen on the emotion it is
    scored on. The projection leaves out the training intercept on purpose: the mean of the other
    emotions' norms moves against the held-out value, which pushes the r of plain LOO predictions to
    about −0.5 under the null at 24 emotions.

    Chance is ``null_mean``, not 0: leave-one-out r stays biased below 0 under the null (about −0.2
    here, from the penalty choice), so read the estimate against the null. The null shuffles the
    norm across emotions and reruns everything, penalty choice included (closed-form kernel ridge, so
    each shuffle is a full rerun); p is one-sided. The CI is not a bootstrap: resampling the
    (projection, norm) pairs ignores the refit and covered the expected r in only 56–92 % of
    simulated data sets (from no signal to r ≈ 0.98, 24 emotions). Instead the CI takes the spread of
    the permutation null on Fisher's z scale, where a correlation's sampling spread depends little on
    its true value, and centres it on the observed z (90–100 % coverage in the same simulations;
    conservative at high r). ``n_resamples`` is therefore absent.

    Parameters
    ----------
    vectors : DataArray, dims (layer, emotion, hidden)
    norm : DataArray, dims (emotion,), float (NaN = unknown), or one value per emotion in vector order.
    n_permutations : norm shuffles (each a full rerun).
    rng : seed or Generator.
    alphas : relative ridge penalties searched inside each training set.

    Returns
    -------
    One :class:`Estimate` per layer (``n`` = emotions with the norm).

    Raises
    ------
    InputError
        When fewer than 4 emotions have the norm.
    """
    _check_vectors(vectors)
    keep, y = _norm_values(norm, _names(vectors))
    perms = _permutations(keep.size, n_permutations, as_rng(rng))
    targets = np.concatenate([y[:, None], y[perms].T], axis=1)  # (m, 1 + P)
    cos = np.asarray(cosine_matrix(vectors).values)[:, keep][:, :, keep]
    grid = np.asarray(alphas, dtype=np.float64)
    out = []
    with one_thread():
        for i in range(cos.shape[0]):
            r = _pearson(_loeo_projections(cos[i], targets, grid).T, targets.T, axis=1)
            est = _estimate(float(r[0]), keep.size, null=r[1:])
            if est.p is not None:
                est = replace(est, ci=_null_shift_ci(est.value, r[1:]))
            out.append(est)
    return tuple(out)


def rsa_norms(vectors: xr.DataArray, emotions: xr.Dataset, *, n_permutations: int = DEFAULT_PERMUTATIONS,
              rng: int | np.random.Generator | None = None,
              replicates: xr.DataArray | None = None) -> tuple[Estimate, ...]:
    """Spearman ρ between vector distances (1 − cosine) and distances in human valence–arousal space.

    Over the emotions with finite valence and arousal, upper triangles of both distance matrices.
    Mantel-style null: the emotion order of the human distance matrix is permuted (the same
    permutations for every layer); p is one-sided (agreement greater than chance).

    Parameters
    ----------
    vectors : DataArray, dims (layer, emotion, hidden)
    emotions : Dataset with dim ``emotion`` and data vars ``valence``, ``arousal`` (NaN = unknown).
    n_permutations : Mantel permutations.
    rng : seed or Generator.
    replicates : DataArray, dims (layer, replicate, emotion, emotion_b), from :func:`bootstrap_cosines`
        (None: no CI).

    Returns
    -------
    One :class:`Estimate` per layer (``n`` = emotions with both norms).

    Raises
    ------
    InputError
        When fewer than 4 emotions have both norms.
    """
    _check_vectors(vectors)
    keep, points = _norm_points(emotions, _names(vectors))
    iu = _upper(keep.size)
    human = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(axis=-1))
    ranks = np.zeros_like(human)
    ranks[iu] = rankdata(human[iu])
    ranks = ranks + ranks.T
    perms = _permutations(keep.size, n_permutations, as_rng(rng))
    null_ranks = _standardise(ranks[perms[:, iu[0]], perms[:, iu[1]]], axis=1)  # (P, pairs)
    sub = np.ix_(keep, keep)
    dist = 1.0 - np.asarray(cosine_matrix(vectors).values)[(slice(None),) + sub][:, iu[0], iu[1]]
    observed_ranks = _standardise(rankdata(dist, axis=-1), axis=1)  # (L, pairs)
    observed = _pearson(observed_ranks, ranks[iu][None, :], axis=1)
    null = null_ranks @ observed_ranks.T / iu[0].size  # (P, L)
    reps = _replicate_values(replicates, vectors)
    out = []
    for i in range(dist.shape[0]):
        boot = None
        if reps is not None:
            rep = 1.0 - reps[i].astype(np.float64)[(slice(None),) + sub][:, iu[0], iu[1]]
            boot = _pearson(rankdata(rep, axis=-1), ranks[iu][None, :], axis=1)
        out.append(_estimate(float(observed[i]), keep.size, replicates=boot, null=null[:, i]))
    return tuple(out)


def _norm_points(emotions: xr.Dataset, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(keep, points)``: emotions with finite valence and arousal and their (valence, arousal); ≥ 4."""
    cols = []
    for var in ("valence", "arousal"):
        if var not in emotions:
            raise InputError(f"the emotions table has no {var} norms")
        cols.append(_aligned(emotions[var], names, np.nan).astype(np.float64))
    points = np.stack(cols, axis=1)
    keep = np.flatnonzero(np.isfinite(points).all(axis=1))
    if keep.size < 4:
        raise InputError(f"{keep.size} emotions have valence and arousal norms (need ≥ 4)")
    return keep, points[keep]


# ---------------------------------------------------------------- the family entry point

def _joined(parts: Iterable[Sequence[Any]]) -> tuple[Any, ...]:
    """Per-layer tuples of consecutive blocks of layers, joined."""
    return tuple(item for part in parts for item in part)


def _ests(values: tuple[Estimate, ...] | None) -> list[dict[str, Any]] | None:
    return None if values is None else [e.to_dict() for e in values]


@dataclass(frozen=True)
class GeometryResult:
    """Geometry of the emotion vectors of every layer (see :func:`run_geometry`).

    ``cosine`` dims (layer, emotion, emotion_b); ``pca`` the :class:`UnitPCA`; ``mean_vector_norm``
    dims (layer,), the mean raw L2 norm of the input vectors (the norm-confound diagnostic). Per-layer
    estimate tuples are aligned with ``layer``; an analysis that was skipped is None, with its reason
    in ``skipped``.
    """

    emotions: tuple[str, ...]
    quadrants: tuple[str, ...]
    n_norms: int
    layer: tuple[int, ...]
    cosine: xr.DataArray
    pca: UnitPCA
    mean_vector_norm: xr.DataArray
    cohesion: tuple[Estimate, ...] | None = None
    kmeans_ari: tuple[Estimate, ...] | None = None
    pc_valence: PCNorm | None = None
    pc_arousal: PCNorm | None = None
    cv_valence: tuple[Estimate, ...] | None = None
    cv_arousal: tuple[Estimate, ...] | None = None
    rsa_norms: tuple[Estimate, ...] | None = None
    skipped: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def concat(cls, parts: Sequence[GeometryResult]) -> GeometryResult:
        """Results of blocks of layers (in layer order, same emotions and settings) as one result.

        Every geometry statistic is computed per layer with resampling draws over stories and emotion
        labels only, so analysing the layers in blocks with the same seed gives the same numbers as
        analysing them at once; this joins the blocks.
        """
        first = parts[0]
        if any(p.emotions != first.emotions for p in parts):
            raise InputError("geometry blocks have different emotions")

        def opt_tuple(name: str) -> tuple[Any, ...] | None:
            values = [getattr(p, name) for p in parts]
            return None if any(v is None for v in values) else _joined(values)

        def opt_pc(name: str) -> PCNorm | None:
            values = [getattr(p, name) for p in parts]
            return None if any(v is None for v in values) else PCNorm.concat(values)

        return cls(emotions=first.emotions, quadrants=first.quadrants, n_norms=first.n_norms,
                   layer=_joined(p.layer for p in parts),
                   cosine=xr.concat([p.cosine for p in parts], dim="layer"),
                   pca=UnitPCA(scores=xr.concat([p.pca.scores for p in parts], dim="layer"),
                               explained=xr.concat([p.pca.explained for p in parts], dim="layer")),
                   mean_vector_norm=xr.concat([p.mean_vector_norm for p in parts], dim="layer"),
                   cohesion=opt_tuple("cohesion"), kmeans_ari=opt_tuple("kmeans_ari"),
                   pc_valence=opt_pc("pc_valence"), pc_arousal=opt_pc("pc_arousal"),
                   cv_valence=opt_tuple("cv_valence"), cv_arousal=opt_tuple("cv_arousal"),
                   rsa_norms=opt_tuple("rsa_norms"), skipped=dict(first.skipped))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; skipped analyses are None (their reason under ``skipped``)."""
        scores = self.pca.scores.transpose("layer", "emotion", "component").values[:, :, :2]
        return {
            "n_emotions": len(self.emotions), "emotions": list(self.emotions), "quadrants": list(self.quadrants),
            "n_norms": int(self.n_norms), "layer": [int(x) for x in self.layer],
            "cosine": [[[json_float(x) for x in row] for row in mat]
                       for mat in self.cosine.transpose("layer", "emotion", "emotion_b").values],
            "cohesion": _ests(self.cohesion), "kmeans_ari": _ests(self.kmeans_ari),
            "pca_explained": [[json_float(x) for x in row]
                              for row in self.pca.explained.transpose("layer", "component").values],
            "pca_scores": [[[json_float(x) for x in em] for em in mat] for mat in scores],
            "pc_valence": None if self.pc_valence is None else self.pc_valence.to_dict(),
            "pc_arousal": None if self.pc_arousal is None else self.pc_arousal.to_dict(),
            "cv_valence": _ests(self.cv_valence), "cv_arousal": _ests(self.cv_arousal),
            "rsa_norms": _ests(self.rsa_norms),
            "mean_vector_norm": [json_float(x) for x in self.mean_vector_norm.values],
            "skipped": dict(self.skipped),
        }


def _norm_column(emotions: xr.Dataset, var: str, names: list[str]) -> np.ndarray:
    if var not in emotions:
        return np.full(len(names), np.nan)
    return _aligned(emotions[var], names, np.nan).astype(np.float64)


def run_geometry(vectors: xr.DataArray, stories: xr.DataArray | None, emotions: xr.Dataset, *,
                 components: xr.DataArray | None = None, baseline: Baseline | None = None,
                 n_permutations: int = DEFAULT_PERMUTATIONS, n_bootstrap: int = DEFAULT_BOOTSTRAP,
                 seed: int = 0, budget_mb: float = DEFAULT_LAYER_BUDGET_MB) -> GeometryResult:
    """Every geometry analysis on every layer of ``vectors``.

    Parameters
    ----------
    vectors : DataArray, dims (layer, emotion, hidden): the emotion vectors (denoised where denoising ran).
    stories : DataArray, dims (layer, stimulus, hidden), the story rows the vectors were built from
        (for the story bootstrap), or None: no bootstrap CIs on cohesion, PC r and RSA.
    emotions : Dataset with dim ``emotion`` and data vars ``quadrant``, ``valence``, ``arousal``
        (emotions it lacks count as unknown).
    components : DataArray, dims (layer, component, hidden): the neutral components projected out of
        the vectors (None for raw vectors).
    baseline : the vectors' recipe, ``"mean"`` or ``"neutral"``; None infers it from the stories.
    n_permutations, n_bootstrap : resampling sizes.
    seed : seeds every resampling (each analysis draws from its own stream).
    budget_mb : the memory budget of the story bootstrap (see :func:`bootstrap_cosines`).

    Returns
    -------
    :class:`GeometryResult`. Emotions without finite valence and arousal are left out of the norm
    analyses (``n_norms`` says how many remain); with fewer than 4 the norm analyses are skipped, and
    without quadrants cohesion and k-means are, each with its reason in ``skipped``.
    """
    _check_vectors(vectors)
    vectors = vectors.transpose(*VECTOR_DIMS)
    names = _names(vectors)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(8)]
    skipped: dict[str, str] = {}
    quadrants = as_labels(_aligned(emotions["quadrant"], names, "") if "quadrant" in emotions else [""] * len(names))
    values = _values(vectors)
    norm = xr.DataArray(np.sqrt((values**2).sum(axis=-1)).mean(axis=1), dims=("layer",),
                        coords={"layer": vectors["layer"].values})
    replicates = None
    if stories is None or n_bootstrap < 1:
        skipped["bootstrap"] = ("no story activations given" if stories is None else "n_bootstrap = 0") + \
            ": cohesion, PC r and RSA have no CI"
    else:
        replicates = bootstrap_cosines(vectors, stories, components=components, baseline=baseline,
                                       n_bootstrap=n_bootstrap, rng=streams[0], budget_mb=budget_mb)
    pca = unit_pca(vectors)
    boot_scores = None if replicates is None else bootstrap_pca_scores(replicates, pca)
    result: dict[str, Any] = {}
    labelled = quadrants[quadrants != ""]
    n_quadrants = len(set(labelled))
    if n_quadrants < 2 or labelled.size <= n_quadrants:
        reason = (f"{labelled.size} emotions with a quadrant in {n_quadrants} quadrants "
                  "(need ≥ 2 quadrants and more emotions than quadrants)")
        skipped.update({"cohesion": reason, "kmeans_ari": reason})
    else:
        result["cohesion"] = quadrant_cohesion(vectors, quadrants, n_permutations=n_permutations,
                                               rng=streams[1], replicates=replicates)
        result["kmeans_ari"] = kmeans_ari(vectors, quadrants, seed=int(streams[2].integers(2**31)),
                                          n_permutations=n_permutations)
    valence, arousal = (_norm_column(emotions, var, names) for var in ("valence", "arousal"))
    has_norms = np.isfinite(valence) & np.isfinite(arousal)
    n_norms = int(has_norms.sum())
    if n_norms < 4:
        reason = f"{n_norms} of {len(names)} emotions have valence and arousal norms (need ≥ 4)"
        skipped.update({k: reason for k in ("pc_valence", "pc_arousal", "cv_valence", "cv_arousal", "rsa_norms")})
    else:
        masked = {"valence": np.where(has_norms, valence, np.nan), "arousal": np.where(has_norms, arousal, np.nan)}
        for j, (name, y) in enumerate(masked.items()):
            result[f"pc_{name}"] = pc_norm_correlation(vectors, y, n_permutations=n_permutations,
                                                       rng=streams[3 + j], pca=pca, boot_scores=boot_scores)
            result[f"cv_{name}"] = cv_norm_correlation(vectors, y, n_permutations=n_permutations,
                                                       rng=streams[5 + j])
        table = xr.Dataset({k: ("emotion", v) for k, v in masked.items()}, coords={"emotion": names})
        result["rsa_norms"] = rsa_norms(vectors, table, n_permutations=n_permutations, rng=streams[7],
                                        replicates=replicates)
    return GeometryResult(emotions=tuple(names), quadrants=tuple(str(q) for q in quadrants), n_norms=n_norms,
                          layer=tuple(int(x) for x in vectors["layer"].values), cosine=cosine_matrix(vectors),
                          pca=pca, mean_vector_norm=norm, skipped=skipped, **result)
