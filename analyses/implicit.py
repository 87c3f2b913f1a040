"""Implicit scenarios and intensity templates: held-out texts scored by centred cosine with the vectors.

Scoring. A scenario's activation ``x`` is compared with each emotion vector ``v`` by the *centred*
cosine ``cos(x − c, v)``: uncentred activations share a large common component, so whichever
vectors align with it win for every text (the references' "depressed is top-1 for 17/50" hubness,
field-notes §1.3 stage 6). ``c`` is given explicitly, per layer, because it depends on the readout:

- for the pooled text readout the pipeline passes the mean of the story class means of the same
  readout (``vectors.means.mean("emotion")``), the origin the vectors were measured from;
- a readout without stories (e.g. the ``assistant`` readout, whose activations live in a different
  region) can use :func:`default_center`, the mean of the scored rows themselves. That uses no
  labels, so the permutation nulls below stay valid, but scores become relative to the scenario
  set (a set dominated by one emotion would centre that emotion away).

Statistics.

- Top-1/top-3 accuracy per layer, n = scenarios, with a Wilson score 95 % CI and a permutation
  null that shuffles the targets across scenarios (vectorised over layers: the rank of every
  emotion is computed once and only the targets move). Scenarios are independent items, so the
  hit count is binomial; a percentile bootstrap would collapse to [0, 0] whenever no scenario is
  hit, which with 48 scenarios and 24 emotions happens by chance at ~13 % of null layers, and
  would then exclude chance.
- Intensity: per template, Spearman ρ of the target emotion's centred cosine against ``level``,
  n = rows, with a permutation p that permutes levels within the template (exact enumeration up
  to :data:`EXACT_LIMIT` orderings, else random draws) and a Fisher-z CI (Bonett–Wright
  variance). The mean ρ over templates, n = templates, has a null that permutes every template
  independently (the same draws for every layer) and a Student-t CI over templates. With six
  levels per template and six templates a percentile bootstrap degenerates or undercovers.
- These three intervals are this module's exceptions to the bootstrap-CI convention. The
  predicted direction is fixed in advance (the level orders the stakes of the target emotion), so
  intensity p-values are one-sided (``alternative="greater"``) by default.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from scipy.stats import binomtest, norm, rankdata
from scipy.stats import t as t_dist

from emovec_store.errors import InputError

from .layers import row_correlations
from .rowslabs import row_means
from .stats import CI_LEVEL, DEFAULT_PERMUTATIONS, Alternative, Estimate, as_rng, json_float, permutation_p
from .vectors import Vectors, check_pooled, unit

EXACT_LIMIT = 40320  # 8!: up to this many orderings a template's permutation null is enumerated exactly
MIN_LEVELS = 3


def _vector_array(vectors: xr.DataArray | Vectors) -> xr.DataArray:
    vec = vectors.vectors if isinstance(vectors, Vectors) else vectors
    if set(vec.dims) != {"layer", "emotion", "hidden"}:
        raise InputError(f"expected emotion vectors with dims (layer, emotion, hidden), got {vec.dims}")
    return vec.reset_coords(drop=True).transpose("layer", "emotion", "hidden")


def _per_layer(arr: xr.DataArray, layers: np.ndarray, what: str) -> xr.DataArray:
    missing = sorted(set(layers.tolist()) - set(arr["layer"].values.tolist()))
    if missing:
        raise InputError(f"the {what} lack layers {missing} of the pooled activations")
    return arr.sel(layer=layers)


def default_center(pooled: xr.DataArray) -> xr.DataArray:
    """The mean of the given pooled rows, per layer: a label-free centre for :func:`centred_cosine`.

    Parameters
    ----------
    pooled : DataArray, dims (layer, stimulus, hidden)
        The rows to average: for a readout with no story rows to centre on, all of its rows or the
        scenarios being scored themselves (see the module docstring for what that implies).

    Returns
    -------
    DataArray, dims (layer, hidden), float64 (lazy on dask input).
    """
    check_pooled(pooled, need=())
    return row_means(pooled)


def centred_cosine(pooled: xr.DataArray, vectors: xr.DataArray | Vectors, center: xr.DataArray) -> xr.DataArray:
    """``cos(x − center, v)`` of every stimulus with every emotion vector, per layer.

    Parameters
    ----------
    pooled : DataArray, dims (layer, stimulus, hidden)
    vectors : DataArray, dims (layer, emotion, hidden) (or :class:`Vectors`, whose ``.vectors`` is used),
        covering the pooled layers.
    center : DataArray, dims (layer, hidden), covering the pooled layers.

    Returns
    -------
    DataArray, dims (layer, stimulus, emotion), float64; 0 where a centred activation or a vector
    is zero. Lazy on dask input. Stimulus coordinates are kept, except that the stimulus label
    ``emotion`` becomes ``stimulus_emotion`` (``emotion`` is the vectors' dim; as in ``projections``).
    """
    check_pooled(pooled, need=())
    layers = np.asarray(pooled["layer"].values)
    vec = _per_layer(_vector_array(vectors), layers, "emotion vectors")
    if set(center.dims) != {"layer", "hidden"}:
        raise InputError(f"expected a center with dims (layer, hidden), got {center.dims}")
    ctr = _per_layer(center.reset_coords(drop=True), layers, "center")
    hidden = pooled.sizes["hidden"]
    if vec.sizes["hidden"] != hidden or ctr.sizes["hidden"] != hidden:
        raise InputError(f"hidden sizes differ: pooled {hidden}, vectors {vec.sizes['hidden']}, "
                         f"center {ctr.sizes['hidden']}")
    if "emotion" in pooled.coords:
        pooled = pooled.rename({"emotion": "stimulus_emotion"})
    centred = pooled.astype(np.float64) - ctr.astype(np.float64)
    scores: xr.DataArray = xr.dot(unit(centred), unit(vec.astype(np.float64)), dim="hidden")
    return scores.transpose("layer", "stimulus", "emotion")


def _rows_of_kind(pooled: xr.DataArray, kind: str | None) -> xr.DataArray:
    if kind is None or "kind" not in pooled.coords:
        return pooled
    keep = np.flatnonzero(np.asarray(pooled["kind"].values).astype(str) == kind)
    if keep.size == 0:
        raise InputError(f"no {kind} stimuli in the pooled activations")
    return pooled.isel(stimulus=keep)


def _positions(scores: np.ndarray) -> np.ndarray:
    """Rank of every emotion per (layer, stimulus): 0 = highest score (stable: ties go to the first)."""
    order = np.argsort(-scores, axis=-1, kind="stable")
    return np.argsort(order, axis=-1, kind="stable")


@dataclass(frozen=True)
class ImplicitResult:
    """Top-k accuracy of implicit scenarios per layer, with hubness and confusion tables.

    ``scores`` (layer, stimulus, emotion): centred cosines; ``top1``/``top3``: one Estimate per
    layer (Wilson CI, n = scenarios, permutation p, ``null_mean``); ``hubness`` (layer, emotion):
    how often each emotion is the top-1 answer (sums to n per layer); ``confusion``
    (layer, target, emotion): target × top-1 counts; ``n_dropped``: scenarios whose target is not
    among the vectors' emotions.
    """

    scores: xr.DataArray
    top1: tuple[Estimate, ...]
    top3: tuple[Estimate, ...]
    chance_top1: float
    chance_top3: float
    hubness: xr.DataArray
    confusion: xr.DataArray
    n_dropped: int

    @property
    def n(self) -> int:
        return int(self.scores.sizes["stimulus"])

    @property
    def emotions(self) -> list[str]:
        return [str(e) for e in self.scores["emotion"].values]

    @property
    def layers(self) -> list[int]:
        return [int(x) for x in self.scores["layer"].values]

    @classmethod
    def concat(cls, parts: Sequence[ImplicitResult]) -> ImplicitResult:
        """Results of blocks of layers (in layer order, same scenarios) as one result (the scores and
        the target shuffles are per layer, so blocks scored with the same seed equal one run)."""
        first = parts[0]
        return cls(scores=xr.concat([p.scores for p in parts], dim="layer"),
                   top1=tuple(e for p in parts for e in p.top1), top3=tuple(e for p in parts for e in p.top3),
                   chance_top1=first.chance_top1, chance_top3=first.chance_top3,
                   hubness=xr.concat([p.hubness for p in parts], dim="layer"),
                   confusion=xr.concat([p.confusion for p in parts], dim="layer"), n_dropped=first.n_dropped)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"n", "n_dropped", "emotions", "layer", "top1", "top3", "chance_top1",
        "chance_top3", "hubness", "confusion", "targets"}``."""
        return {"n": self.n, "n_dropped": int(self.n_dropped), "emotions": self.emotions, "layer": self.layers,
                "top1": [e.to_dict() for e in self.top1], "top3": [e.to_dict() for e in self.top3],
                "chance_top1": float(self.chance_top1), "chance_top3": float(self.chance_top3),
                "hubness": self.hubness.transpose("layer", "emotion").values.astype(int).tolist(),
                "confusion": self.confusion.transpose("layer", "target", "emotion").values.astype(int).tolist(),
                "targets": [str(t) for t in self.confusion["target"].values]}


def _topk_estimates(pos: np.ndarray, target_idx: np.ndarray, shuffled: np.ndarray, k: int) -> tuple[Estimate, ...]:
    """Per layer: top-``k`` accuracy with its Wilson CI and target-shuffle permutation p.

    ``pos`` (layer, stimulus, emotion) ranks; ``shuffled`` (perm, stimulus) permuted target indices.
    One layer at a time, so memory stays at perm × stimulus.
    """
    rows = np.arange(target_idx.size)
    out = []
    for layer_pos in pos:
        hits = int((layer_pos[rows, target_idx] < k).sum())
        null = (layer_pos[rows[None, :], shuffled] < k).mean(axis=-1)
        ci = binomtest(hits, rows.size).proportion_ci(confidence_level=CI_LEVEL, method="wilson")
        value = hits / rows.size
        out.append(Estimate(value=value, ci=(float(ci.low), float(ci.high)), n=int(rows.size),
                            p=permutation_p(value, null), n_permutations=int(null.size),
                            null_mean=float(null.mean())))
    return tuple(out)


def run_implicit(pooled: xr.DataArray, vectors: xr.DataArray | Vectors, *, center: xr.DataArray,
                 kind: str | None = "implicit", n_permutations: int = DEFAULT_PERMUTATIONS,
                 seed: int | np.random.Generator | None = 0) -> ImplicitResult:
    """Implicit-scenario test: does the target emotion's vector score highest for its scenario?

    Parameters
    ----------
    pooled : DataArray, dims (layer, stimulus, hidden), with ``emotion`` (the target) and, when
        ``kind`` is set, ``kind`` coordinates.
    vectors : DataArray, dims (layer, emotion, hidden), or :class:`Vectors`.
    center : DataArray, dims (layer, hidden): see the module docstring and :func:`default_center`.
    kind : score only rows of this ``kind`` (None: every row given).
    n_permutations : target shuffles of the null (same shuffles for every layer and for top-1/top-3).
    seed : seed or Generator.
    """
    check_pooled(pooled)
    if n_permutations < 1:
        raise InputError("n_permutations must be at least 1")
    rows = _rows_of_kind(pooled, kind)
    vec = _vector_array(vectors)
    emotions = [str(e) for e in vec["emotion"].values]
    targets = np.asarray(rows["emotion"].values).astype(str)
    keep = np.isin(targets, emotions)
    if not keep.any():
        raise InputError("no scenario has a target among the vectors' emotions")
    rows = rows.isel(stimulus=np.flatnonzero(keep))
    target_idx = np.array([emotions.index(t) for t in targets[keep]])
    scores = centred_cosine(rows, vec, center).compute()
    pos = _positions(np.asarray(scores.values))
    n_emotions = len(emotions)
    shuffled = as_rng(seed).permuted(np.tile(target_idx, (n_permutations, 1)), axis=1)
    top1 = _topk_estimates(pos, target_idx, shuffled, 1)
    top3 = _topk_estimates(pos, target_idx, shuffled, 3)
    answer = (pos == 0).astype(np.int64)  # (layer, stimulus, emotion): one-hot top-1 answer
    target_names = [e for e in emotions if e in set(targets[keep])]
    target_onehot = (target_idx[:, None] == np.array([emotions.index(t) for t in target_names])[None, :])
    layer_coord = {"layer": scores["layer"].values}
    hubness = xr.DataArray(answer.sum(axis=1), dims=("layer", "emotion"), coords={**layer_coord, "emotion": emotions})
    confusion = xr.DataArray(np.einsum("st,lse->lte", target_onehot.astype(np.int64), answer),
                             dims=("layer", "target", "emotion"),
                             coords={**layer_coord, "target": target_names, "emotion": emotions})
    return ImplicitResult(scores=scores, top1=top1, top3=top3, chance_top1=1 / n_emotions,
                          chance_top3=min(3, n_emotions) / n_emotions, hubness=hubness, confusion=confusion,
                          n_dropped=int((~keep).sum()))


def _level_permutations(n: int, n_permutations: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """``(perms, exact)``: every ordering of ``n`` rows (identity first) when there are at most
    :data:`EXACT_LIMIT`, else ``n_permutations`` random ones."""
    if math.factorial(n) <= EXACT_LIMIT:
        return np.array(list(itertools.permutations(range(n))), dtype=np.int64), True
    return rng.permuted(np.tile(np.arange(n), (n_permutations, 1)), axis=1), False


def _spearman_ci(rho: float, n: int) -> tuple[float, float] | None:
    """95 % CI of Spearman ρ by Fisher z with the Bonett–Wright (2000) variance ``(1 + ρ²/2)/(n − 3)``.

    Used per template instead of a bootstrap: with a handful of levels (one row each) resampled
    sets are mostly ties and the percentile interval degenerates.
    """
    if n <= 3 or not np.isfinite(rho):
        return None
    z = np.arctanh(np.clip(rho, -1 + 1e-12, 1 - 1e-12))
    half = norm.ppf((1 + CI_LEVEL) / 2) * math.sqrt((1 + rho**2 / 2) / (n - 3))
    return (float(np.tanh(z - half)), float(np.tanh(z + half)))


def _t_interval(values: np.ndarray) -> tuple[float, float] | None:
    """95 % Student-t interval of the mean of the finite ``values`` (None with fewer than 2).

    Used for the mean ρ over templates instead of a bootstrap: with a handful of templates the
    percentile bootstrap over them is far too narrow (3 templates give roughly their range). A mean
    of correlations lies in [-1, 1], so the interval is clipped there.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return None
    half = t_dist.ppf((1 + CI_LEVEL) / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return (float(max(-1.0, v.mean() - half)), float(min(1.0, v.mean() + half)))


def _finite_mean(x: np.ndarray, axis: int) -> np.ndarray:
    """Mean over the finite entries along ``axis``; NaN where none is finite (no warning)."""
    finite = np.isfinite(x)
    count = finite.sum(axis=axis)
    out = np.full(count.shape, np.nan)
    np.divide(np.where(finite, x, 0.0).sum(axis=axis), count, out=out, where=count > 0)
    return out


@dataclass(frozen=True)
class IntensityResult:
    """Intensity templates: Spearman ρ of the target emotion's centred cosine against the level.

    ``rho`` maps template → one Estimate per layer (Fisher-z CI, permutation p, n = rows);
    ``mean_rho`` one Estimate per layer (Student-t CI over templates, n = templates, permutation p);
    ``curves`` (layer, template, level): mean centred cosine of the target per level (NaN where a
    template lacks a level); ``dropped`` maps template → why it was left out.
    """

    templates: tuple[str, ...]
    target: dict[str, str]
    levels: dict[str, tuple[int, ...]]
    rho: dict[str, tuple[Estimate, ...]]
    mean_rho: tuple[Estimate, ...]
    curves: xr.DataArray
    dropped: dict[str, str]

    @property
    def layers(self) -> list[int]:
        return [int(x) for x in self.curves["layer"].values]

    @classmethod
    def concat(cls, parts: Sequence[IntensityResult]) -> IntensityResult:
        """Results of blocks of layers (in layer order, same templates) as one result."""
        first = parts[0]
        return cls(templates=first.templates, target=dict(first.target), levels=dict(first.levels),
                   rho={t: tuple(e for p in parts for e in p.rho[t]) for t in first.templates},
                   mean_rho=tuple(e for p in parts for e in p.mean_rho),
                   curves=xr.concat([p.curves for p in parts], dim="layer"), dropped=dict(first.dropped))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"templates", "target", "levels", "layer", "rho", "mean_rho", "curves"}``."""
        curves = {}
        for t in self.templates:
            c = self.curves.sel(template=t, level=list(self.levels[t])).transpose("layer", "level").values
            curves[t] = [[json_float(x) for x in row] for row in c]
        return {"templates": list(self.templates), "target": dict(self.target),
                "levels": {t: [int(x) for x in lv] for t, lv in self.levels.items()}, "layer": self.layers,
                "rho": {t: [e.to_dict() for e in self.rho[t]] for t in self.templates},
                "mean_rho": [e.to_dict() for e in self.mean_rho], "curves": curves}


def _template_plan(rows: xr.DataArray, emotions: list[str]) -> tuple[dict[str, np.ndarray], dict[str, str],
                                                                     dict[str, str]]:
    """Row indices per usable template, its target, and the reasons for dropping the others."""
    names = np.asarray(rows["template"].values).astype(str)
    targets = np.asarray(rows["emotion"].values).astype(str)
    levels = np.asarray(rows["level"].values)
    plan, target, dropped = {}, {}, {}
    for t in dict.fromkeys(names[names != ""]):
        idx = np.flatnonzero(names == t)
        found = sorted(set(targets[idx]))
        if len(found) != 1:
            raise InputError(f"intensity template {t!r} has {len(found)} target emotions {found}; expected one")
        if found[0] not in emotions:
            dropped[t] = f"target {found[0]!r} is not among the vectors' emotions"
        elif np.unique(levels[idx]).size < MIN_LEVELS:
            dropped[t] = f"fewer than {MIN_LEVELS} distinct levels"
        else:
            plan[t], target[t] = idx, found[0]
    if not plan:
        raise InputError("no usable intensity template: " + "; ".join(f"{t}: {why}" for t, why in dropped.items()))
    return plan, target, dropped


def run_intensity(pooled: xr.DataArray, vectors: xr.DataArray | Vectors, *, center: xr.DataArray,
                  kind: str | None = "intensity", n_permutations: int = DEFAULT_PERMUTATIONS,
                  alternative: Alternative = "greater",
                  seed: int | np.random.Generator | None = 0) -> IntensityResult:
    """Intensity templates: does the target emotion's centred cosine rise with the level?

    Parameters
    ----------
    pooled : DataArray, dims (layer, stimulus, hidden), with coordinates ``template``, ``level``
        and ``emotion`` (the template's target), and ``kind`` when ``kind`` is set.
    vectors : DataArray, dims (layer, emotion, hidden), or :class:`Vectors`.
    center : DataArray, dims (layer, hidden) (see :func:`centred_cosine`).
    kind : use only rows of this ``kind`` (None: every row with a template).
    n_permutations : random permutations per template when exact enumeration is too large, and the
        draws of the mean-ρ null.
    alternative : direction of the permutation tests (default ``"greater"``: ρ > 0 predicted).
    seed : seed or Generator.
    """
    check_pooled(pooled, need=("emotion", "template", "level"))
    if n_permutations < 1:
        raise InputError("n_permutations must be at least 1")
    rows = _rows_of_kind(pooled, kind)
    vec = _vector_array(vectors)
    plan, target, dropped = _template_plan(rows, [str(e) for e in vec["emotion"].values])
    used = np.concatenate(list(plan.values()))
    rows = rows.isel(stimulus=used)
    scores = np.asarray(centred_cosine(rows, vec, center).compute().values)
    emotions = [str(e) for e in vec["emotion"].values]
    levels_all = np.asarray(rows["level"].values).astype(np.int64)
    all_levels = np.unique(levels_all)
    rng = as_rng(seed)
    templates = tuple(plan)
    rho, null_full, levels, curves = {}, [], {}, []
    start = 0
    for t in templates:
        sl = slice(start, start + plan[t].size)
        start = sl.stop
        cos = scores[:, sl, emotions.index(target[t])]  # (layer, rows)
        lev = levels_all[sl]
        perms, exact = _level_permutations(lev.size, n_permutations, rng)
        cos_ranks, lev_ranks = rankdata(cos, axis=-1), rankdata(lev)
        observed = row_correlations(cos_ranks, lev_ranks[None])[:, 0]
        null = row_correlations(cos_ranks, lev_ranks[perms])  # (layer, perms)
        null_full.append(null)
        test_null = null[:, 1:] if exact else null  # exact: identity excluded, so (k+1)/(N−1+1) = k'/N
        rho[t] = tuple(Estimate(value=float(observed[i]), ci=_spearman_ci(float(observed[i]), lev.size),
                                n=int(lev.size), p=permutation_p(observed[i], test_null[i], alternative),
                                n_permutations=int(test_null.shape[1]), null_mean=float(test_null[i].mean()))
                       for i in range(observed.size))
        levels[t] = tuple(int(x) for x in np.unique(lev))
        onehot = (lev[:, None] == all_levels[None, :]).astype(np.float64)
        counts = onehot.sum(axis=0)
        curve = np.full((cos.shape[0], all_levels.size), np.nan)
        np.divide(cos @ onehot, counts[None, :], out=curve, where=counts[None, :] > 0)
        curves.append(curve)
    per_template = np.stack([[e.value for e in rho[t]] for t in templates], axis=-1)  # (layer, template)
    observed_mean = _finite_mean(per_template, axis=-1)
    draws = [null[:, rng.integers(0, null.shape[1], size=n_permutations)] for null in null_full]
    null_mean = _finite_mean(np.stack(draws, axis=-1), axis=-1)  # (layer, draws)
    mean_rho = []
    for i in range(per_template.shape[0]):
        ci = rho[templates[0]][i].ci if len(templates) == 1 else _t_interval(per_template[i])
        mean_rho.append(Estimate(value=float(observed_mean[i]), ci=ci, n=len(templates),
                                 p=permutation_p(observed_mean[i], null_mean[i], alternative),
                                 n_permutations=n_permutations, null_mean=float(_finite_mean(null_mean[i], 0))))
    curve_da = xr.DataArray(np.stack(curves, axis=1), dims=("layer", "template", "level"),
                            coords={"layer": rows["layer"].values, "template": list(templates),
                                    "level": all_levels})
    return IntensityResult(templates=templates, target=target, levels=levels, rho=rho, mean_rho=tuple(mean_rho),
                           curves=curve_da, dropped=dropped)
