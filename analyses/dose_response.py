"""Dose–response of steering: generate under each direction at each strength, score, and test.

Design: every condition (an emotion's vector, a random direction of the same norm, another emotion's
vector as a control) is run at every strength on the same prompts with the same rollout seeds, so
cells differ only by the direction and its strength (common random numbers). Strength 0 installs
no hook and is generated once per (prompt, rollout), shared by all conditions.

Statistics:
- per cell, the mean score with a percentile bootstrap 95% CI over its generations;
- per (condition, scorer), the least-squares slope of score on strength, with a bootstrap CI that
  resamples (prompt, rollout) units, keeping each unit's whole strength series;
- per target emotion and scorer, a permutation p of the target's slope against the random
  directions' slopes: ``(k + 1) / (n + 1)`` where k of the n random slopes are at least as large in
  absolute value (two-sided; with n random directions p cannot go below ``1 / (n + 1)``);
- per condition, the smallest strength (each sign) at which the geometric-mean perplexity reaches
  twice the unsteered one (None when it never does in the range).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from emovec_store.errors import InputError

from .scorers import ModelJudge, TextScorer, nrc_affect, vader_valence
from .steer import SteeringSource, generate, prompt_ids, random_direction, steering, steering_vector

#: Built-in neutral prompts (everyday requests with no emotional content).
NEUTRAL_PROMPTS = (
    "Describe what you did this morning.",
    "Write a few sentences about the weather today.",
    "Tell me about a walk through the town.",
    "What happened at the meeting yesterday?",
)

RANDOM_PREFIX = "random:"

#: ``from_position`` value that steers the generated tokens only (each prompt's own length).
GENERATED = "generated"


def parse_strengths(spec: str) -> list[float]:
    """``"a:b:n"`` → n evenly spaced strengths from a to b; ``"x,y,z"`` → those values."""
    try:
        if ":" in spec:
            lo, hi, n = spec.split(":")
            if int(n) < 2:
                raise ValueError
            values = [round(float(x), 10) for x in np.linspace(float(lo), float(hi), int(n))]
        else:
            values = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--strengths {spec!r}: expected START:STOP:N (N >= 2) or comma-separated numbers") from None
    if not values:
        raise InputError(f"--strengths {spec!r} names no strength")
    return sorted(set(values) | {0.0})


def parse_from_position(spec: str) -> int | str:
    """``"generated"`` (steer the generated tokens only) or a position P >= 0 (steer positions >= P)."""
    if spec.strip() == GENERATED:
        return GENERATED
    try:
        value = int(spec)
    except ValueError:
        value = -1
    if value < 0:
        raise InputError(f"--from-position {spec!r}: expected a position >= 0 or {GENERATED!r}")
    return value


def start_position(from_position: int | str | None, n_prompt: int) -> int | None:
    """The first steered position of a prompt of ``n_prompt`` tokens (None: every position)."""
    if from_position == GENERATED:
        return n_prompt
    return None if from_position is None else int(from_position)


def read_prompts(path: str) -> list[str]:
    """One prompt per non-empty line of a text file."""
    try:
        with open(path, encoding="utf-8") as fh:
            prompts = [line.strip() for line in fh if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read prompts file {path!r}: {exc}") from None
    if not prompts:
        raise InputError(f"prompts file {path!r} has no non-empty line")
    return prompts


@dataclass(frozen=True)
class SteerSettings:
    """What to run: target emotions, strengths, prompts, rollouts and controls."""

    emotions: Sequence[str]
    strengths: Sequence[float] = (-0.5, -0.25, 0.0, 0.25, 0.5)
    prompts: Sequence[str] = NEUTRAL_PROMPTS[:3]
    rollouts: int = 2
    seed: int = 0
    random_controls: int = 3
    max_new_tokens: int = 32
    bootstrap: int = 1000
    #: None: steer every position; P: positions >= P; ``"generated"``: the generated tokens only
    from_position: int | str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"emotions": list(self.emotions), "strengths": list(self.strengths), "prompts": list(self.prompts),
                "rollouts": self.rollouts, "seed": self.seed, "random_controls": self.random_controls,
                "max_new_tokens": self.max_new_tokens, "bootstrap": self.bootstrap,
                "from_position": self.from_position}


@dataclass
class SteerResult:
    """Every generation with its scores, and the tables computed from them."""

    generations: pd.DataFrame
    cells: pd.DataFrame
    slopes: pd.DataFrame
    perplexity_doubling: dict[str, dict[str, float | None]]
    controls: dict[str, str]
    settings: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    def scorers(self) -> list[str]:
        return sorted(self.cells["scorer"].unique())

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "source": self.source, "controls": self.controls,
                "slopes": self.slopes.to_dict(orient="records"),
                "perplexity_doubling": self.perplexity_doubling,
                "cells": self.cells.to_dict(orient="records")}


def control_emotion(source: SteeringSource, target: str, preferred: Sequence[str]) -> str:
    """The emotion whose vector is least similar (cosine) to ``target``'s, among ``preferred`` when
    it holds another emotion, else among all of the store's."""
    pool = [e for e in preferred if e != target] or [e for e in source.emotions if e != target]
    if not pool:
        raise InputError("a different emotion's vector is needed as a control; the store has only one emotion")
    t = source.unit(target)
    return min(pool, key=lambda e: float(source.unit(e) @ t))


def _directions(source: SteeringSource, settings: SteerSettings) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    dirs = {e: source.unit(e) for e in settings.emotions}
    controls = {e: control_emotion(source, e, settings.emotions) for e in settings.emotions}
    for c in controls.values():
        dirs.setdefault(c, source.unit(c))
    hidden = source.vectors.sizes["hidden"]
    for k in range(settings.random_controls):
        dirs[f"{RANDOM_PREFIX}{k}"] = random_direction(hidden, seed=settings.seed * 1000 + 7919 + k)
    return dirs, controls


def run_steering(model: Any, tokenizer: Any, source: SteeringSource, settings: SteerSettings, *,
                 extra_scorers: Mapping[str, TextScorer] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> SteerResult:
    """Generate and score every (condition, strength, prompt, rollout); see the module docstring."""
    if settings.rollouts < 1 or not settings.prompts:
        raise InputError("steering needs at least one prompt and one rollout")
    dirs, controls = _directions(source, settings)
    judge = ModelJudge(model, source.layer, source.unit_matrix(), source.emotions)
    encoded = [prompt_ids(tokenizer, p) for p in settings.prompts]
    strengths = sorted(set(settings.strengths) | {0.0})
    cells = [(c, s) for c in dirs for s in strengths if s != 0] + [("", 0.0)]
    units = [(p, r) for p in range(len(encoded)) for r in range(settings.rollouts)]
    total, done = len(cells) * len(units), 0
    rows: list[dict[str, Any]] = []
    for condition, strength in cells:
        vector = steering_vector(dirs[condition], strength, source.mean_norm) if condition else None
        outs = []
        for p, r in units:
            with steering(model, source.layer, vector,
                          from_position=start_position(settings.from_position, len(encoded[p]))):
                outs.append(generate(model, tokenizer, encoded[p], seed=settings.seed + r,
                                     max_new_tokens=settings.max_new_tokens))
        for (p, r), tokens in zip(units, outs):
            text = tokenizer.decode(tokens, skip_special_tokens=True)
            verdict = judge.judge(encoded[p], tokens)
            row: dict[str, Any] = {"condition": condition, "strength": strength, "prompt": p, "rollout": r,
                                   "text": text, "n_tokens": len(tokens), "perplexity": verdict.perplexity,
                                   "vader": vader_valence(text)}
            row.update({f"nrc:{a}": v for a, v in nrc_affect(text).items()})
            row.update({f"readout:{e}": v for e, v in verdict.readout.items()})
            for name, fn in (extra_scorers or {}).items():
                row[name] = float(fn(text))
            rows.append(row)
            done += 1
            if progress is not None:
                progress(done, total)
    generations = _expand_zero(pd.DataFrame(rows), list(dirs))
    return summarise(generations, settings, controls, source)


def _expand_zero(gen: pd.DataFrame, conditions: list[str]) -> pd.DataFrame:
    """The shared strength-0 generations, copied into each condition's series."""
    zero = gen[gen["condition"] == ""]
    copies = [zero.assign(condition=c) for c in conditions]
    return pd.concat([gen[gen["condition"] != ""], *copies], ignore_index=True)


def score_columns(gen: pd.DataFrame) -> list[str]:
    """Every score column: perplexity, VADER, the NRC affects, the read-outs and any user scorer."""
    fixed = {"condition", "strength", "prompt", "rollout", "text", "n_tokens"}
    return [c for c in gen.columns if c not in fixed]


def _slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slopes along the last axis, skipping NaN scores (NaN with fewer than 2 strengths)."""
    ok = np.isfinite(y)
    n = ok.sum(-1)
    xm = np.where(ok, x, 0).sum(-1) / np.maximum(n, 1)
    ym = np.where(ok, y, 0).sum(-1) / np.maximum(n, 1)
    xc = np.where(ok, x - xm[..., None], 0)
    sxx = (xc**2).sum(-1)
    sxy = (xc * np.where(ok, y - ym[..., None], 0)).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sxx > 1e-12, sxy / np.where(sxx > 1e-12, sxx, 1), np.nan)


def _cell_table(gen: pd.DataFrame, scorers: list[str], rng: np.random.Generator, n_boot: int) -> pd.DataFrame:
    out = []
    for (cond, strength), group in gen.groupby(["condition", "strength"], sort=True):
        for name in scorers:
            values = group[name].to_numpy(dtype=np.float64)
            values = values[np.isfinite(values)]
            if name == "perplexity":  # geometric mean: perplexities multiply
                values = np.log(values)
            if len(values):
                boots = rng.choice(values, size=(n_boot, len(values))).mean(1)
                mean, lo, hi = float(values.mean()), *(float(q) for q in np.percentile(boots, [2.5, 97.5]))
            else:
                mean = lo = hi = float("nan")
            if name == "perplexity":
                mean, lo, hi = float(np.exp(mean)), float(np.exp(lo)), float(np.exp(hi))
            out.append({"condition": cond, "strength": strength, "scorer": name, "mean": float(mean),
                        "ci_low": float(lo), "ci_high": float(hi), "n": int(len(values))})
    return pd.DataFrame(out)


def _slope_table(gen: pd.DataFrame, scorers: list[str], controls: Mapping[str, str], rng: np.random.Generator,
                 n_boot: int) -> pd.DataFrame:
    units = sorted(set(zip(gen["prompt"], gen["rollout"])))
    picks = rng.integers(0, len(units), (n_boot, len(units)))
    slopes: dict[tuple[str, str], tuple[float, float, float]] = {}
    for cond, sub in gen.groupby("condition"):
        sub = sub.sort_values(["prompt", "rollout", "strength"])
        per_unit = [g for _, g in sub.groupby(["prompt", "rollout"], sort=True)]
        width = max(len(g) for g in per_unit)
        x = np.full((len(per_unit), width), np.nan)
        for i, g in enumerate(per_unit):
            x[i, :len(g)] = g["strength"].to_numpy(np.float64)
        for name in scorers:
            y = np.full_like(x, np.nan)
            for i, g in enumerate(per_unit):
                y[i, :len(g)] = g[name].to_numpy(np.float64)
            if name == "perplexity":
                y = np.log(y)
            est = float(_slopes(x.reshape(-1), y.reshape(-1)))
            boots = _slopes(x[picks].reshape(n_boot, -1), y[picks].reshape(n_boot, -1))
            lo, hi = np.nanpercentile(boots, [2.5, 97.5]) if np.isfinite(boots).any() else (np.nan, np.nan)
            slopes[(str(cond), name)] = (est, float(lo), float(hi))
    randoms = [c for c in gen["condition"].unique() if str(c).startswith(RANDOM_PREFIX)]
    rows = []
    for target, control in controls.items():
        for name in scorers:
            est, lo, hi = slopes[(target, name)]
            null = np.array([slopes[(r, name)][0] for r in randoms])
            k = int((np.abs(null) >= abs(est)).sum()) if np.isfinite(est) else len(null)
            rows.append({"emotion": target, "scorer": name, "slope": est, "ci_low": lo, "ci_high": hi,
                         "random_slopes": [float(v) for v in null],
                         "random_abs_max": float(np.abs(null).max()) if len(null) else float("nan"),
                         "p_vs_random": (k + 1) / (len(null) + 1) if len(null) else float("nan"),
                         "control_emotion": control, "control_slope": slopes[(control, name)][0]})
    return pd.DataFrame(rows)


def _doubling(cells: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    ppl = cells[cells["scorer"] == "perplexity"]
    for cond, group in ppl.groupby("condition"):
        series = dict(zip(group["strength"], group["mean"]))
        base = series.get(0.0, float("nan"))
        found: dict[str, float | None] = {}
        for side, order in (("positive", sorted(s for s in series if s > 0)),
                            ("negative", sorted((s for s in series if s < 0), reverse=True))):
            found[side] = next((float(s) for s in order if series[s] >= 2 * base), None)
        out[str(cond)] = found
    return out


def summarise(generations: pd.DataFrame, settings: SteerSettings, controls: Mapping[str, str],
              source: SteeringSource) -> SteerResult:
    """The cell, slope and perplexity tables of a set of scored generations."""
    rng = np.random.default_rng(settings.seed)
    scorers = score_columns(generations)
    cells = _cell_table(generations, scorers, rng, settings.bootstrap)
    slopes = _slope_table(generations, scorers, controls, rng, settings.bootstrap)
    src = {"model": source.model, "layer": source.layer, "mean_norm": source.mean_norm, "readout": source.readout,
           "vector_set": source.vector_set, "model_name": source.model_attrs.get("model")}
    return SteerResult(generations=generations, cells=cells, slopes=slopes, perplexity_doubling=_doubling(cells),
                       controls=dict(controls), settings=settings.to_dict(), source=src)


def examples(result: SteerResult, per_cell: int = 1) -> pd.DataFrame:
    """The first ``per_cell`` generations (prompt 0 first) of every condition and strength."""
    gen = result.generations.sort_values(["condition", "strength", "prompt", "rollout"])
    return gen.groupby(["condition", "strength"]).head(per_cell)[["condition", "strength", "prompt", "rollout",
                                                                   "text", "vader", "perplexity"]]
