"""Statistics helpers shared by the analyses: estimates with CIs, permutation p-values, resampling.

Conventions, used by every analysis family:

- A headline number is an :class:`Estimate`: the value, a 95 % percentile-bootstrap CI, ``n`` (what
  was counted: stimuli, emotions or pairs), and, where a test applies, a permutation p-value.
- Permutation p-values are ``(k + 1) / (n + 1)``, where ``k`` counts null statistics at least as
  extreme as the observed one (Phipson & Smyth 2010): never 0, so "p < 0.001" needs ≥ 999 shuffles.
- Resampling is seeded: every function takes a ``numpy.random.Generator`` or a seed.

scipy.stats' ``bootstrap``/``permutation_test`` resample one flat sample; the analyses resample
*within groups* (stories within emotion) and recompute class means, PCA or regressions per replicate,
so they draw indices here and vectorise the statistic themselves.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Alternative = Literal["greater", "less", "two-sided"]
DEFAULT_PERMUTATIONS = 1000
DEFAULT_BOOTSTRAP = 1000
CI_LEVEL = 0.95


def as_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A Generator from a seed (or the Generator itself)."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def json_float(x: float | None) -> float | None:
    """A float for JSON: NaN (and None) become None, numpy scalars plain floats."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


@dataclass(frozen=True)
class Estimate:
    """A number with its uncertainty: ``value``, 95 % ``ci`` (low, high), ``n`` and optional ``p``.

    ``n_resamples`` and ``n_permutations`` record how the CI and p were obtained; ``null_mean`` is the
    mean of the permutation null (what "no structure" gives) where one was drawn.
    """

    value: float
    ci: tuple[float, float] | None = None
    n: int | None = None
    p: float | None = None
    n_resamples: int | None = None
    n_permutations: int | None = None
    null_mean: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN becomes None, numpy scalars become floats."""
        out: dict[str, Any] = {"value": json_float(self.value)}
        out["ci"] = None if self.ci is None else [json_float(self.ci[0]), json_float(self.ci[1])]
        for key in ("n", "p", "n_resamples", "n_permutations", "null_mean"):
            v = getattr(self, key)
            if v is not None:
                out[key] = int(v) if key.startswith("n") and key != "null_mean" else json_float(v)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Estimate:
        ci = d.get("ci")
        return cls(value=float("nan") if d.get("value") is None else float(d["value"]),
                   ci=None if ci is None else (float("nan") if ci[0] is None else float(ci[0]),
                                               float("nan") if ci[1] is None else float(ci[1])),
                   n=d.get("n"), p=d.get("p"), n_resamples=d.get("n_resamples"),
                   n_permutations=d.get("n_permutations"), null_mean=d.get("null_mean"))


def permutation_p(observed: float, null: Sequence[float] | np.ndarray,
                  alternative: Alternative = "greater") -> float:
    """``(k + 1) / (n + 1)`` with ``k`` null values at least as extreme as ``observed``.

    ``two-sided`` compares absolute values (for statistics centred at 0 under the null, such as r).
    """
    values = np.asarray(null, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0 or not np.isfinite(observed):
        return float("nan")
    tol = 1e-12 * max(1.0, abs(float(observed)))  # ties count as extreme
    if alternative == "greater":
        k = int(np.sum(values >= observed - tol))
    elif alternative == "less":
        k = int(np.sum(values <= observed + tol))
    else:
        k = int(np.sum(np.abs(values) >= abs(observed) - tol))
    return (k + 1) / (values.size + 1)


def percentile_ci(replicates: Sequence[float] | np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates (NaN replicates are ignored)."""
    reps = np.asarray(replicates, dtype=np.float64)
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return (float("nan"), float("nan"))
    alpha = (1 - level) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha])
    return (float(lo), float(hi))


def stratified_bootstrap_indices(groups: Sequence[Any] | np.ndarray, n_resamples: int,
                                 rng: np.random.Generator) -> np.ndarray:
    """``(n_resamples, n)`` row indices that resample with replacement *within* each group.

    Every replicate keeps each group's size, so class means stay defined (stories within emotion).
    """
    groups = np.asarray(groups)
    out = np.empty((n_resamples, groups.size), dtype=np.int64)
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        out[:, rows] = rows[rng.integers(0, rows.size, size=(n_resamples, rows.size))]
    return out


def bootstrap_indices(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_resamples, n)`` row indices drawn with replacement."""
    return rng.integers(0, n, size=(n_resamples, n))


def estimate_from_replicates(value: float, replicates: Sequence[float] | np.ndarray, *, n: int,
                             null: Sequence[float] | np.ndarray | None = None,
                             alternative: Alternative = "greater") -> Estimate:
    """An :class:`Estimate` from the observed value, its bootstrap replicates and an optional null."""
    reps = np.asarray(replicates, dtype=np.float64)
    p = None if null is None else permutation_p(value, null, alternative)
    null_mean = None if null is None else float(np.nanmean(np.asarray(null, dtype=np.float64)))
    return Estimate(value=float(value), ci=percentile_ci(reps), n=int(n), p=p,
                    n_resamples=int(reps.size) if reps.size else None,
                    n_permutations=None if null is None else int(np.asarray(null).size),
                    null_mean=null_mean)
