"""A small, realistic fake of `emovec analyze`'s results dict (the results.json schema), for report tests."""
from __future__ import annotations

from typing import Any

import numpy as np

EMOTIONS = ("joy", "excitement", "calm", "contentment", "sadness", "boredom", "anger", "fear")
QUADRANTS = ("pleasant-high", "pleasant-high", "pleasant-low", "pleasant-low", "unpleasant-low", "unpleasant-low",
             "unpleasant-high", "unpleasant-high")
VALENCE = (0.95, 0.85, 0.75, 0.8, 0.1, 0.3, 0.15, 0.12)
AROUSAL = (0.75, 0.9, 0.15, 0.3, 0.3, 0.2, 0.85, 0.8)
TEMPLATES = ("tpl-joy", "tpl-fear")


def est(value: float | None, lo: float | None = None, hi: float | None = None, n: int = 8,
        p: float | None = None) -> dict[str, Any]:
    """An Estimate dict (``Estimate.to_dict()`` shape)."""
    out: dict[str, Any] = {"value": value, "ci": None if lo is None else [lo, hi], "n": n}
    if p is not None:
        out.update(p=p, n_permutations=1000, null_mean=0.0)
    return out


def _rising(layers: list[int], start: float, end: float, half: float, n: int,
            p: float | None = None) -> list[dict[str, Any]]:
    return [est(v, v - half, v + half, n, p) for v in np.linspace(start, end, len(layers)).round(4).tolist()]


def _emotions(n_emotions: int, rng: np.random.Generator) -> tuple[list[str], list[str], list[float], list[float]]:
    """The 8 named emotions, then ``emotion-09``... with quadrants in turn and norms inside their quadrant."""
    names, quads, val, aro = list(EMOTIONS), list(QUADRANTS), list(VALENCE), list(AROUSAL)
    for i in range(len(EMOTIONS), n_emotions):
        q = QUADRANTS[(2 * i) % len(QUADRANTS)]
        names.append(f"emotion-{i + 1:02d}")
        quads.append(q)
        val.append(round(float(rng.uniform(0.55, 0.95) if q.startswith("pleasant") else rng.uniform(0.05, 0.45)), 2))
        aro.append(round(float(rng.uniform(0.55, 0.95) if q.endswith("high") else rng.uniform(0.05, 0.45)), 2))
    return names[:n_emotions], quads[:n_emotions], val[:n_emotions], aro[:n_emotions]


def _model(slug: str, n_layers: int, n_emotions: int, rng: np.random.Generator) -> dict[str, Any]:
    layers = list(range(n_layers))
    default = round(2 * (n_layers - 1) / 3)
    names, quadrants, valence, arousal = _emotions(n_emotions, rng)
    k = len(names)
    base = np.array([[v, a] for v, a in zip(valence, arousal)]) - 0.5
    cosine = []
    for i in layers:
        x = base * (1 + i) + rng.normal(0, 0.6, base.shape)
        x = np.hstack([x, rng.normal(0, 0.3, (k, 3))])
        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        cosine.append((u @ u.T).round(3).tolist())
    scores = [(base * (0.5 + 0.1 * i) + rng.normal(0, 0.05, base.shape)).round(3).tolist() for i in layers]
    confusion = (np.eye(k) * 6 + rng.integers(0, 2, (k, k))).astype(int).tolist()
    geometry = {
        "n_emotions": k, "emotions": names, "quadrants": quadrants, "n_norms": k - 1, "layer": layers,
        "cosine": cosine, "cohesion": _rising(layers, 0.05, 0.3, 0.06, 28, 0.01),
        "kmeans_ari": _rising(layers, 0.0, 0.4, 0.2, k, 0.05),
        "pca_explained": [[0.4, 0.2, 0.1, 0.08, 0.05] for _ in layers], "pca_scores": scores,
        "pc_valence": {"pc1": _rising(layers, 0.5, 0.9, 0.1, k - 1, 0.01),
                       "pc2": _rising(layers, 0.2, 0.1, 0.2, k - 1, 0.5),
                       "best_pc": [1] * n_layers, "best": _rising(layers, 0.5, 0.9, 0.1, k - 1, 0.01)},
        "pc_arousal": {"pc1": _rising(layers, 0.1, 0.2, 0.2, k - 1, 0.6),
                       "pc2": _rising(layers, 0.4, 0.7, 0.15, k - 1, 0.03),
                       "best_pc": [2] * n_layers, "best": _rising(layers, 0.4, 0.7, 0.15, k - 1, 0.03)},
        "cv_valence": _rising(layers, 0.3, 0.85, 0.2, k - 1, 0.002),
        "cv_arousal": _rising(layers, -0.1, 0.25, 0.35, k - 1, 0.2),
        "rsa_norms": _rising(layers, 0.1, 0.5, 0.15, 28, 0.01),
        "mean_vector_norm": np.linspace(1, 30, n_layers).round(2).tolist(), "skipped": {},
        "norms": {"valence": valence[:-1] + [None], "arousal": arousal[:-1] + [None]},
    }
    probes = {
        "n": 80, "n_classes": k, "classes": names, "n_topics": 5, "n_splits": 5, "chance": 1 / k,
        "reduction": None, "layer": layers,
        "probe": _rising(layers, 0.4, 0.8, 0.08, 80, 0.001), "centroid": _rising(layers, 0.3, 0.7, 0.09, 80),
        "baselines": {"length": est(0.15, 0.08, 0.22, 80, 0.2), "bag_of_words": est(0.45, 0.35, 0.55, 80, 0.001),
                      "shuffled": est(0.12, 0.06, 0.2, 80, 0.6)},
        "best_baseline": "bag_of_words", "margin": _rising(layers, -0.05, 0.35, 0.1, 80, 0.01),
        "selected": {"layers": [default, default, default - 1, default, default], "accuracy": est(0.7, 0.6, 0.8, 80)},
        "default_layer": default, "confusion_default": confusion, "skipped": {},
    }
    implicit = {
        "n": 24, "n_dropped": 0, "emotions": names, "layer": layers,
        "top1": _rising(layers, 0.1, 0.5, 0.15, 24, 0.01), "top3": _rising(layers, 0.35, 0.8, 0.12, 24, 0.01),
        "chance_top1": 1 / k, "chance_top3": 3 / k,
        "hubness": [rng.multinomial(24, np.full(k, 1 / k)).tolist() for _ in layers],
        "confusion": [(np.eye(k, dtype=int) * 2 + rng.integers(0, 2, (k, k))).tolist() for _ in layers],
        "targets": names,
    }
    intensity = {
        "templates": list(TEMPLATES), "target": {"tpl-joy": "joy", "tpl-fear": "fear"},
        "levels": {t: [1, 2, 3, 4] for t in TEMPLATES}, "layer": layers,
        "rho": {t: _rising(layers, 0.2, 0.9, 0.3, 4, 0.05) for t in TEMPLATES},
        "mean_rho": _rising(layers, 0.2, 0.9, 0.25, 2, 0.02),
        "curves": {t: [[round(0.05 * lv * (1 + i / n_layers) - 0.04 * j, 4) for lv in (1, 2, 3, 4)] for i in layers]
                   for j, t in enumerate(TEMPLATES)},
    }
    rsa = np.round(np.exp(-np.abs(np.subtract.outer(layers, layers)) / 3), 3).tolist()
    summary = [{"metric": name, "best_layer": n_layers - 1, "best": ests[-1], "default": ests[default],
                "floor": ests[0], "rise_above_floor": ests[default]["value"] - ests[0]["value"]}
               for name, ests in (("CV valence r", geometry["cv_valence"]), ("probe accuracy", probes["probe"]))]
    return {
        "provenance": {"model": f"HuggingFaceTB/{slug}", "architecture": "LlamaForCausalLM", "n_layers": n_layers - 1,
                       "d_model": 576, "readout_spec": "mean", "storage_dtype": "float16"},
        "readout": "mean", "language": "en", "layers": layers, "default_layer": default,
        "n": {"stories": 80, "emotions": k, "topics": 5, "neutral": 12}, "texts": "store",
        "vectors": {"layer": layers, "denoise_k": [3] * n_layers, "mean_norm": geometry["mean_vector_norm"],
                    "recipe": "class means minus mean across emotions; neutral PCA 0.5"},
        "geometry": geometry, "probes": probes, "implicit": {"mean": implicit}, "intensity": {"mean": intensity},
        "layers_summary": {"layer": layers, "rsa": rsa, "default_layer": default, "summary": summary,
                           "norm_check": [{"metric": "CV valence r", "rho": 0.95, "flagged": True},
                                          {"metric": "probe accuracy", "rho": 0.3, "flagged": False}]},
        "lens": {"layer": layers, "k": 3, "emotions": names,
                 "top": {e: [[f" {e}", f" {e}ful", "\n"] for _ in layers] for e in names},
                 "bottom": {e: [["zzz", " not", "|"] for _ in layers] for e in names}},
        "derived": ["/models/x/derived/vectors"], "skipped": {"bag_of_words_extra": "example skip"},
        "timings": {"vectors": 1.5, "geometry": 3.25},
    }


def fake_results(models: tuple[str, ...] = ("smollm2-135m",), n_layers: int = 7, n_emotions: int = 8,
                 seed: int = 0) -> dict[str, Any]:
    """A results dict for ``models`` with planted structure: a valence axis (CV r CI above 0 at every layer),
    no clear arousal axis (CI covering 0), a probe that beats the best text baseline from the middle layers.
    The last emotion has no human norms. ``n_emotions=24, n_layers=31`` gives the built-in corpus' shape."""
    rng = np.random.default_rng(seed)
    return {
        "emovec_version": "0.1.0", "command": "emovec analyze store.zarr --out rep",
        "created": "2025-01-01T00:00:00+00:00",
        "store": {"location": "store.zarr", "corpus": {"name": "emovec-builtin", "version": "1"}},
        "settings": {"n_permutations": 1000, "n_bootstrap": 1000, "seed": 0, "readout": "mean", "denoise": 0.5},
        "models": {slug: _model(slug, n_layers, n_emotions, rng) for slug in models},
    }
