"""Null calibration of the probe statistics: how often p < 0.05 and whether the CI covers chance.

On synthetic null datasets (labels independent of activations; topic offsets shared by a topic's
stories), the centroid readout's two p-values are compared on the same data: the prediction
permutation of :func:`accuracy_estimates` and the full-refit permutation of
:func:`centroid_refit_estimate`; and the topic-cluster bootstrap CI's coverage of chance is counted.
A valid test has P(p < α) ≤ α; a 95 % CI should cover chance in about 95 % of null datasets.

    python benchmarks/probe_calibration.py --datasets 300
"""
from __future__ import annotations

import argparse

import numpy as np
import xarray as xr

from emovec.analyses.probes import accuracy_estimates, centroid_predictions, centroid_refit_estimate, topic_folds


def null_dataset(rng: np.random.Generator, topics: int, classes: int, per_cell: int, hidden: int) -> xr.DataArray:
    """Stories whose activations carry the topic (offset) but not the label."""
    labels = np.tile(np.repeat(np.arange(classes), per_cell), topics)
    topic = np.repeat(np.arange(topics), classes * per_cell)
    x = rng.normal(size=(1, labels.size, hidden)) + 0.5 * rng.normal(size=(1, topics, hidden))[:, topic]
    names = np.array([f"e{c}" for c in labels], dtype=object)
    return xr.DataArray(x, dims=("layer", "stimulus", "hidden"),
                        coords={"layer": [0], "emotion": ("stimulus", names),
                                "topic": ("stimulus", np.array([f"t{t}" for t in topic], dtype=object))})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", type=int, default=300)
    ap.add_argument("--permutations", type=int, default=199)
    ap.add_argument("--topics", type=int, default=8)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--per-cell", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    p_pred, p_refit, covered = [], [], []
    for d in range(args.datasets):
        stories = null_dataset(rng, args.topics, args.classes, args.per_cell, args.hidden)
        fold = topic_folds(stories["topic"], min(5, args.topics))
        refit = centroid_refit_estimate(stories, fold, 0, n_permutations=args.permutations,
                                        n_bootstrap=args.permutations, seed=d)
        fixed = accuracy_estimates(centroid_predictions(stories, fold), n_permutations=args.permutations,
                                   n_bootstrap=args.permutations, seed=d)[0]
        assert refit.p is not None and fixed.p is not None
        p_refit.append(refit.p)
        p_pred.append(fixed.p)
        covered.append(refit.ci[0] <= 1 / args.classes <= refit.ci[1])
    print(f"{args.datasets} null datasets: {args.topics} topics, {args.classes} classes, {args.per_cell} stories "
          f"per cell, hidden {args.hidden}, {args.permutations} permutations")
    for name, ps in (("prediction permutation", np.array(p_pred)), ("full refit", np.array(p_refit))):
        print(f"  {name:<24} P(p < 0.05) = {np.mean(ps < 0.05):.3f}   P(p < 0.1) = {np.mean(ps < 0.1):.3f}")
    print(f"  topic-cluster bootstrap 95 % CI covers chance in {np.mean(covered):.3f} of datasets")


if __name__ == "__main__":
    main()
