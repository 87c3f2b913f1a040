"""Emotion probes per layer: topic-grouped CV, topic-cluster bootstrap CIs, permutation nulls, text baselines.

Issue 7 §1.3 and the layer-selection part of §1.5. Everything below is scored on **one fold structure**:
``GroupKFold`` by topic (default 5 splits, :func:`topic_folds`), so the stories of a topic are never in
both the training and the test fold, and every layer, readout and baseline sees the same folds.

Readouts (out-of-fold predictions for every story):

- ``probe``: ``StandardScaler`` → (optional ``PCA``) → multinomial ``LogisticRegression`` (lbfgs, L2,
  ``C = PROBE_C``), the whole pipeline fitted on the training folds only (:func:`probe_pipeline`).
  Hyperparameters are fixed in advance, never tuned on the folds they are scored on.
- ``centroid`` (Anthropic's readout): emotion vectors = class means minus the mean of class means of
  the training folds, optionally with neutral principal components projected out; a test story goes to
  the emotion of highest cosine between its centred activation and the vectors (:func:`centroid_predictions`).

Statistics (:func:`accuracy_estimates`, :func:`margin_estimates`):

- **CI**: 95 % percentile interval of a *cluster bootstrap over topics*: topics are drawn with
  replacement and keep all their stories, because stories of one topic share errors. The same topic
  draws are used for every layer, readout and baseline, so differences (the margin) are paired. The
  out-of-fold predictions are held fixed: the CI covers which topics the corpus happens to contain,
  not the noise of refitting the models, so it is too narrow. On null synthetic data (8–20 topics,
  4 classes) it covered chance in about 80 % of datasets, not 95 %; judge "above chance" by p.
- **p (accuracy)**: permutation test of association between the fixed out-of-fold predictions and the
  labels, labels permuted *within topic* (each topic keeps its label composition). Null: within a topic,
  which story carries which emotion is unrelated to what the readout predicts. It does not refit the
  model per shuffle (that is what makes ≥ 1000 shuffles on every layer affordable); p = (k + 1)/(n + 1).
  Because different folds' predictions share training labels, it is slightly liberal: on null synthetic
  data P(p < 0.05) was 0.07 (probe) and P(p < 0.1) 0.14; a p at the 1/(n + 1) floor is unaffected.
- **p (full refit, centroid readout at the default layer)**: :func:`centroid_refit_estimate` shuffles the
  labels within topic, refits the closed-form readout on every training fold and scores it out of fold, per
  shuffle. It is valid by exchangeability; on 300 null synthetic datasets (8 topics, 4 classes, 3 stories
  per cell, topic offsets; ``python benchmarks/probe_calibration.py --datasets 300``) P(p < 0.05) was
  0.023 and P(p < 0.1) 0.050 (conservative through ties of a discrete accuracy), against 0.037 and 0.067
  for the prediction permutation on the same data. The logistic probe gets no full-refit null (5 fits × 1000 shuffles
  per layer is not affordable); its prediction-permutation p is read next to this one.
- **p (margin)**: sign-flip test over topics of the per-topic difference in correct predictions.
  Null: within each topic the two readouts are equally accurate (their difference is symmetric about 0).

Held-out layer selection (:func:`nested_layer_selection`): for each outer fold the layer is chosen by
an inner topic-grouped CV of the centroid readout on the outer training fold only, and the probe's
out-of-fold predictions at that layer (fitted on the same outer training fold) are scored on the
outer test fold. This, not the maximum over layers, is the headline "best layer" number.

Cost: the probe is 5 fits per layer; on the built-in corpus shape (960 stories, 24 classes, hidden 576,
31 layers) :func:`run_probes` took 9–16 s on a busy 2-core machine with BLAS held to one thread
(451 s with threaded BLAS on the same machine), so no reduction is applied by default.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from emovec_store.errors import InputError

from ._common import as_labels, one_thread
from .baselines import (
    bag_of_words_baseline,
    fold_predictions,
    length_baseline,
    shuffled_baseline,
)
from .budget import as_float64, trim_heap
from .layers import default_layer as default_layer_of
from .stats import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_PERMUTATIONS,
    Estimate,
    as_rng,
    bootstrap_indices,
    estimate_from_replicates,
)
from .vectors import check_pooled

#: Inverse L2 strength of the probe (on standardised features), fixed in advance.
PROBE_C = 1.0
PROBE_MAX_ITER = 1000
TEXT_BASELINES = ("length", "bag_of_words")


def _classes(stories: xr.DataArray, categories: Sequence[str] | None) -> list[str]:
    check_pooled(stories, need=("emotion", "topic"))
    labels, topics = as_labels(stories["emotion"]), as_labels(stories["topic"])
    n = labels.size
    if (labels == "").any():
        raise InputError(f"{int((labels == '').sum())} of {n} stories have no emotion label; pass labelled stories")
    if (topics == "").any():
        raise InputError(f"{int((topics == '').sum())} of {n} stories have no topic; topic-grouped CV needs one")
    present = set(labels)
    if categories is None:
        classes = sorted(present)
    else:
        unknown = sorted(present - set(categories))
        if unknown:
            raise InputError(f"stories carry emotions not in categories: {', '.join(unknown)}")
        classes = [c for c in categories if c in present]
    if len(classes) < 2:
        raise InputError(f"probes need stories of at least 2 emotions, got {len(classes)}")
    return classes


def topic_folds(topics: xr.DataArray, n_splits: int = 5) -> xr.DataArray:
    """The test-fold index of every stimulus under ``GroupKFold`` by topic, dims ``(stimulus,)``.

    Parameters
    ----------
    topics : DataArray, dims (stimulus,): the topic of each stimulus (e.g. ``stories["topic"]``).
    n_splits : number of folds, between 2 and the number of topics.

    Returns
    -------
    fold : DataArray, dims (stimulus,), int, with the stimulus coordinates of ``topics``. No topic has
        stimuli in two folds.
    """
    groups = as_labels(topics)
    n_topics = len(set(groups))
    if n_topics < 2:
        raise InputError(f"topic-grouped CV needs stories from at least 2 topics, got {n_topics}")
    if not 2 <= n_splits <= n_topics:
        raise InputError(f"n_splits must be between 2 and the number of topics ({n_topics}), got {n_splits}")
    fold = np.empty(groups.size, dtype=np.int64)
    for k, (_, test) in enumerate(GroupKFold(n_splits).split(np.zeros((groups.size, 1)), groups=groups)):
        fold[test] = k
    return topics.copy(data=fold).rename("fold")


def probe_pipeline(n_components: int | None = None) -> Pipeline:
    """The layer probe: ``StandardScaler`` → optional ``PCA(n_components)`` → ``LogisticRegression``.

    The logistic regression is multinomial (lbfgs) with L2 penalty ``C = PROBE_C``. Every step is
    fitted on the training fold only when used through :func:`probe_predictions`.
    """
    steps: list[Any] = [StandardScaler()]
    if n_components is not None:
        steps.append(PCA(n_components, svd_solver="covariance_eigh"))
    steps.append(LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER))
    return make_pipeline(*steps)


def _effective_components(n_components: int | None, hidden: int, fold: xr.DataArray) -> int | None:
    if n_components is None:
        return None
    if n_components < 1:
        raise InputError(f"n_components must be a positive number of PCA components, got {n_components}")
    sizes = np.bincount(np.asarray(fold.values))
    smallest_train = int(sizes.sum() - sizes.max())
    k = min(n_components, smallest_train)
    return None if k >= hidden else k


def _layer_matrix(stories: xr.DataArray, layer: Any) -> np.ndarray:
    return as_float64(stories.sel(layer=layer).transpose("stimulus", "hidden").data)


def _canonical(values: np.ndarray) -> np.ndarray:
    """Labels as an object array whose elements are shared references to one ``str`` per class (8 bytes
    per prediction, where fixed-width unicode costs 4 bytes per character: (layer, stimulus) tables of
    hundreds of layers stay small)."""
    classes, inverse = np.unique(as_labels(values), return_inverse=True)
    return np.asarray(classes.astype(object)[inverse.reshape(np.shape(values))])


def _per_layer(stories: xr.DataArray, rows: list[np.ndarray], name: str) -> xr.DataArray:
    labels = stories["emotion"]
    data = np.stack([_canonical(r) if np.asarray(r).dtype != object else r for r in rows])
    return xr.DataArray(data, dims=("layer", "stimulus"), coords=labels.coords, name=name).assign_coords(
        layer=stories["layer"].values)


def probe_predictions(stories: xr.DataArray, fold: xr.DataArray, *,
                      n_components: int | None = None) -> xr.DataArray:
    """Out-of-fold predicted emotion of every story at every layer, dims ``(layer, stimulus)``.

    One :func:`probe_pipeline` per layer and fold, fitted on the other folds; one layer is loaded at a
    time (dask-backed input stays out of core).

    Parameters
    ----------
    stories : DataArray, dims (layer, stimulus, hidden), with an ``emotion`` coordinate.
    fold : DataArray, dims (stimulus,): test-fold index of each story (:func:`topic_folds`).
    n_components : PCA components fitted inside each training fold (None: no reduction).
    """
    check_pooled(stories)
    labels = stories["emotion"]
    rows = [_canonical(fold_predictions(lambda: probe_pipeline(n_components), _layer_matrix(stories, layer),
                                        labels, fold))
            for layer in stories["layer"].values]
    return _per_layer(stories, rows, "probe")


def transfer_predictions(train: xr.DataArray, test: xr.DataArray, *,
                         n_components: int | None = None) -> xr.DataArray:
    """Predicted emotion of every ``test`` story at every layer by a :func:`probe_pipeline` fitted on
    all of ``train`` at that layer, dims ``(layer, stimulus)`` with the test stories' coordinates.

    For transfer between disjoint sets of stories (e.g. languages): no story is in both, so no folds
    are needed. Both must have the same layers; one layer is loaded at a time.
    """
    check_pooled(train)
    check_pooled(test)
    layers = [int(x) for x in train["layer"].values]
    if layers != [int(x) for x in test["layer"].values]:
        raise InputError("training and test stories must have the same layers")
    labels = as_labels(train["emotion"])
    rows = []
    with one_thread():
        for layer in layers:
            model = probe_pipeline(n_components).fit(_layer_matrix(train, layer), labels)
            rows.append(_canonical(model.predict(_layer_matrix(test, layer))))
    return _per_layer(test, rows, "transfer")


def _codes(values: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    return np.asarray(pd.Categorical(values, categories=list(classes)).codes, dtype=np.int64)


def _centroid_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, n_classes: int,
                      components: np.ndarray | None) -> np.ndarray:
    counts = np.bincount(y_train, minlength=n_classes)
    present = counts > 0
    onehot = (y_train[:, None] == np.arange(n_classes)[None, :]) / np.where(present, counts, 1)
    means = onehot.T @ x_train
    centre = means[present].mean(axis=0)
    vectors = means - centre
    if components is not None:
        vectors = vectors - (vectors @ components.T) @ components
    norms = np.linalg.norm(vectors, axis=1)
    scores = (x_test - centre) @ (vectors / np.where(norms > 0, norms, 1.0)[:, None]).T
    scores[:, ~present] = -np.inf
    return np.asarray(np.argmax(scores, axis=1))


def _components_at(components: xr.DataArray | None, layer: Any) -> np.ndarray | None:
    if components is None:
        return None
    if layer not in components["layer"].values:
        raise InputError(f"neutral components have no layer {layer}")
    return np.asarray(components.sel(layer=layer).transpose("component", "hidden").values, dtype=np.float64)


def _centroid_oof(x: np.ndarray, codes: np.ndarray, folds: np.ndarray, n_classes: int,
                  components: np.ndarray | None) -> np.ndarray:
    predicted = np.empty_like(codes)
    for k in np.unique(folds):
        train, test = folds != k, folds == k
        predicted[test] = _centroid_predict(x[train], codes[train], x[test], n_classes, components)
    return predicted


def centroid_predictions(stories: xr.DataArray, fold: xr.DataArray, *, classes: Sequence[str] | None = None,
                         components: xr.DataArray | None = None) -> xr.DataArray:
    """Out-of-fold predictions of the centroid readout (argmax cosine to emotion vectors), dims ``(layer, stimulus)``.

    Per fold, the vectors are the training stories' class means minus the mean of class means (optionally
    with the neutral ``components`` projected out); a test story's activation minus that same centre is
    compared by cosine with every vector. Emotions absent from a training fold are never predicted.

    Parameters
    ----------
    stories : DataArray, dims (layer, stimulus, hidden), with an ``emotion`` coordinate.
    fold : DataArray, dims (stimulus,): test-fold index of each story.
    classes : emotion order (default: sorted labels).
    components : DataArray, dims (layer, component, hidden): orthonormal neutral principal components
        (zero rows allowed) to project out of the vectors, as ``Vectors.components``; None: none.
    """
    check_pooled(stories)
    labels = as_labels(stories["emotion"])
    classes = sorted(set(labels)) if classes is None else list(classes)
    codes, folds = _codes(labels, classes), np.asarray(fold.values)
    names = np.asarray(classes, dtype=object)
    with one_thread():
        rows = [names[_centroid_oof(_layer_matrix(stories, layer), codes, folds, len(classes),
                                    _components_at(components, layer))]
                for layer in stories["layer"].values]
    return _per_layer(stories, rows, "centroid")


#: Bytes of one block of the within-topic permutation table (int32 rows), generated when used.
PERMUTATION_BLOCK_BYTES = 4 * 2**20


@dataclass(frozen=True)
class _Draws:
    """Resampling shared by every readout: topic code per row, bootstrap topic counts, null draws.

    The permutations are not stored: :meth:`permutation_blocks` regenerates them from ``perm_seed`` in
    blocks of at most :data:`PERMUTATION_BLOCK_BYTES`, the same permutations on every call, so a table of
    ``n_permutations × stimuli`` never exists (1,000 shuffles of 205,000 stories would be 0.8 GB).
    """

    topic: np.ndarray  # (n,) topic code of each stimulus
    weights: np.ndarray  # (n_bootstrap, n_topics) times each topic is drawn
    n_permutations: int
    perm_seed: int
    flips: np.ndarray  # (n_permutations, n_topics) ±1 per topic

    def permutation_blocks(self) -> Iterator[np.ndarray]:
        """``(block, n)`` row permutations within topic (int32 where rows fit), in a fixed order."""
        n = self.topic.size
        dtype = np.int32 if n < 2**31 else np.int64
        step = max(1, PERMUTATION_BLOCK_BYTES // (np.dtype(dtype).itemsize * max(1, n)))
        rng = np.random.default_rng(self.perm_seed)
        members = [np.flatnonzero(self.topic == t) for t in range(self.weights.shape[1])]
        for start in range(0, self.n_permutations, step):
            size = min(step, self.n_permutations - start)
            block = np.empty((size, n), dtype=dtype)
            for rows in members:
                block[:, rows] = rng.permuted(np.tile(rows.astype(dtype), (size, 1)), axis=1)
            yield block


def _draw(topics: np.ndarray, n_bootstrap: int, n_permutations: int, seed: int | np.random.Generator | None) -> _Draws:
    if n_bootstrap < 1 or n_permutations < 1:
        raise InputError(f"need at least 1 bootstrap resample and 1 permutation, got {n_bootstrap} and "
                         f"{n_permutations}")
    rng = as_rng(seed)
    names, topic = np.unique(topics, return_inverse=True)
    n_topics = names.size
    drawn = bootstrap_indices(n_topics, n_bootstrap, rng)
    weights = np.zeros((n_bootstrap, n_topics))
    np.add.at(weights, (np.repeat(np.arange(n_bootstrap), n_topics), drawn.ravel()), 1.0)
    perm_seed = int(rng.integers(0, 2**63 - 1))
    flips = rng.integers(0, 2, size=(n_permutations, n_topics)) * 2.0 - 1.0
    return _Draws(topic=topic, weights=weights, n_permutations=n_permutations, perm_seed=perm_seed, flips=flips)


def _rows(predictions: xr.DataArray) -> np.ndarray:
    if "stimulus" not in predictions.dims or predictions.ndim > 2:
        raise InputError(f"predictions must have dims (stimulus,) or (layer, stimulus), got {predictions.dims}")
    values = np.asarray(predictions.transpose(..., "stimulus").values)
    if not (values.dtype == object and all(isinstance(v, str) for v in values.flat)):
        values = as_labels(values)  # our own tables are shared str objects already; others are converted
    return values.reshape(-1, predictions.sizes["stimulus"])


def _truth(predictions: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    missing = [c for c in ("emotion", "topic") if c not in predictions.coords]
    if missing:
        raise InputError(f"predictions have no {', '.join(missing)} coordinate to score against")
    return as_labels(predictions["emotion"]), as_labels(predictions["topic"])


def _topic_sums(values: np.ndarray, draws: _Draws) -> np.ndarray:
    n_topics = draws.weights.shape[1]
    return np.stack([np.bincount(draws.topic, weights=v, minlength=n_topics) for v in values])


def _cluster_means(values: np.ndarray, draws: _Draws) -> np.ndarray:
    """Bootstrap replicates ``(n_bootstrap, m)`` of the row means of ``values (m, n)``, topics resampled."""
    sizes = np.bincount(draws.topic, minlength=draws.weights.shape[1]).astype(np.float64)
    return np.asarray((draws.weights @ _topic_sums(values, draws).T) / (draws.weights @ sizes)[:, None])


def _accuracies(predicted: np.ndarray, truth: np.ndarray, draws: _Draws) -> list[Estimate]:
    classes = sorted(set(truth) | set(predicted.ravel()))
    y, pred = _codes(truth, classes), _codes(predicted.ravel(), classes).reshape(predicted.shape)
    correct = (pred == y[None, :]).astype(np.float64)
    boot = _cluster_means(correct, draws)
    y_small = y.astype(np.int16 if len(classes) < 2**15 else np.int64)
    null = np.empty((len(pred), draws.n_permutations))
    start = 0
    for block in draws.permutation_blocks():
        y_perm = y_small[block]
        null[:, start:start + len(block)] = [(p[None, :] == y_perm).mean(axis=1) for p in pred]
        start += len(block)
    return [estimate_from_replicates(float(c.mean()), boot[:, j], n=truth.size, null=null[j])
            for j, c in enumerate(correct)]


def centroid_refit_estimate(stories: xr.DataArray, fold: xr.DataArray, layer: int, *,
                            classes: Sequence[str] | None = None, components: xr.DataArray | None = None,
                            n_bootstrap: int = DEFAULT_BOOTSTRAP, n_permutations: int = DEFAULT_PERMUTATIONS,
                            seed: int | np.random.Generator | None = 0) -> Estimate:
    """The centroid readout's accuracy at ``layer`` with a **full-refit** permutation p.

    Per shuffle the emotion labels are permuted within topic (each topic keeps its label composition,
    the folds stay as they are), the readout is refitted on every training fold and scored out of fold;
    p = (k + 1)/(n + 1) over those refitted accuracies. Unlike the prediction-permutation p of
    :func:`accuracy_estimates`, this null has the training labels shuffled too, so it is exact
    (up to Monte Carlo error) for the question "do the activations carry the label at all?". The CI is
    the same topic-cluster bootstrap as :func:`accuracy_estimates` (same ``seed``: same draws).
    Cost: ``n_permutations`` × folds closed-form fits (seconds on the built-in corpus).
    """
    check_pooled(stories, need=("emotion", "topic"))
    labels = as_labels(stories["emotion"])
    classes = sorted(set(labels)) if classes is None else list(classes)
    codes, folds = _codes(labels, classes), np.asarray(fold.values)
    x, comps = _layer_matrix(stories, layer), _components_at(components, layer)
    draws = _draw(as_labels(stories["topic"]), n_bootstrap, n_permutations, seed)
    with one_thread():
        observed = _centroid_oof(x, codes, folds, len(classes), comps)
        null = np.array([float(np.mean(_centroid_oof(x, codes[perm], folds, len(classes), comps) == codes[perm]))
                         for block in draws.permutation_blocks() for perm in block])
    correct = (observed == codes).astype(np.float64)[None, :]
    boot = _cluster_means(correct, draws)[:, 0]
    return estimate_from_replicates(float(correct.mean()), boot, n=codes.size, null=null)


def accuracy_estimates(predictions: xr.DataArray, *, n_bootstrap: int = DEFAULT_BOOTSTRAP,
                       n_permutations: int = DEFAULT_PERMUTATIONS,
                       seed: int | np.random.Generator | None = 0) -> list[Estimate]:
    """Accuracy of out-of-fold predictions with a topic-cluster bootstrap CI and a within-topic permutation p.

    See the module docstring for exactly what the CI and the p express. Calls with the same ``seed`` and
    the same stimuli draw the same topics and permutations (paired comparisons across readouts).

    Parameters
    ----------
    predictions : DataArray, dims (layer, stimulus) or (stimulus,), predicted labels, with the true
        ``emotion`` and the ``topic`` of every stimulus as coordinates.
    n_bootstrap : topic-cluster bootstrap resamples.
    n_permutations : within-topic label permutations.
    seed : seed of the resampling.

    Returns
    -------
    One :class:`Estimate` per layer (a single one for a (stimulus,) input): value, CI, n stories, p.
    """
    truth, topics = _truth(predictions)
    return _accuracies(_rows(predictions), truth, _draw(topics, n_bootstrap, n_permutations, seed))


def margin_estimates(predictions: xr.DataArray, baseline: xr.DataArray, *, n_bootstrap: int = DEFAULT_BOOTSTRAP,
                     n_permutations: int = DEFAULT_PERMUTATIONS,
                     seed: int | np.random.Generator | None = 0) -> list[Estimate]:
    """Accuracy of ``predictions`` minus accuracy of ``baseline``, with a paired topic-cluster bootstrap CI.

    Both accuracies are recomputed on the same resampled topics; p is the one-sided topic sign-flip test
    of the module docstring (is the readout more accurate than the baseline?). With T topics there are
    only 2**T sign patterns, so p cannot go much below 2**-T (about 1e-6 for the built-in 20 topics).

    Parameters
    ----------
    predictions : DataArray, dims (layer, stimulus) or (stimulus,), with ``emotion`` and ``topic`` coords.
    baseline : DataArray, dims (stimulus,): the baseline's predictions of the same stimuli.
    n_bootstrap, n_permutations, seed : as in :func:`accuracy_estimates`.

    Returns
    -------
    One :class:`Estimate` per layer: value (accuracy difference), CI, n stories, p.
    """
    truth, topics = _truth(predictions)
    if baseline.dims != ("stimulus",) or baseline.sizes["stimulus"] != truth.size:
        raise InputError("the baseline must have dims (stimulus,) and the stimuli of the predictions")
    draws = _draw(topics, n_bootstrap, n_permutations, seed)
    diff = ((_rows(predictions) == truth[None, :]).astype(np.float64)
            - (as_labels(baseline) == truth).astype(np.float64)[None, :])
    boot = _cluster_means(diff, draws)
    null = draws.flips @ _topic_sums(diff, draws).T / truth.size
    return [estimate_from_replicates(float(d.mean()), boot[:, j], n=truth.size, null=null[:, j])
            for j, d in enumerate(diff)]


@dataclass(frozen=True)
class LayerSelection:
    """Held-out layer selection.

    ``layers``: the layer chosen in each outer fold; ``accuracy``: the scored readout's accuracy on the
    outer test folds at those layers; ``inner_accuracy`` dims (fold, layer): the inner-CV centroid
    accuracy the choice was made on; ``predictions`` dims (stimulus,): the scored predictions.
    """

    layers: tuple[int, ...]
    accuracy: Estimate
    inner_accuracy: xr.DataArray
    predictions: xr.DataArray

    def to_dict(self) -> dict[str, Any]:
        """``{"layers": [...], "accuracy": Estimate dict}``."""
        return {"layers": list(self.layers), "accuracy": self.accuracy.to_dict()}


def nested_layer_selection(stories: xr.DataArray, fold: xr.DataArray, scored: xr.DataArray, *,
                           classes: Sequence[str] | None = None, components: xr.DataArray | None = None,
                           n_bootstrap: int = DEFAULT_BOOTSTRAP, n_permutations: int = DEFAULT_PERMUTATIONS,
                           seed: int | np.random.Generator | None = 0) -> LayerSelection:
    """Choose a layer per outer fold on its training fold only, score it on the outer test fold.

    For outer fold k, the stories of the other folds are split by ``GroupKFold`` on their topics
    (min(number of outer folds, their topics) splits); the layer with the highest inner-CV centroid
    accuracy (ties: the shallower) is chosen, and ``scored`` at that layer is scored on fold k. The
    outer test fold never influences its own choice.

    Parameters
    ----------
    stories : DataArray, dims (layer, stimulus, hidden), with ``emotion`` and ``topic`` coordinates.
    fold : DataArray, dims (stimulus,): outer test-fold index of each story.
    scored : DataArray, dims (layer, stimulus): out-of-fold predictions on the same folds (the probe's).
    classes, components : as in :func:`centroid_predictions`.
    n_bootstrap, n_permutations, seed : as in :func:`accuracy_estimates`.
    """
    check_pooled(stories, need=("emotion", "topic"))
    labels, topics = as_labels(stories["emotion"]), as_labels(stories["topic"])
    classes = sorted(set(labels)) if classes is None else list(classes)
    codes, folds = _codes(labels, classes), np.asarray(fold.values)
    outer = np.unique(folds)
    inner_folds: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for k in outer:
        train = folds != k
        n_train_topics = len(set(topics[train]))
        if n_train_topics < 2:
            raise InputError(f"nested layer selection needs ≥ 2 topics in every outer training fold; fold {k} "
                             f"leaves {n_train_topics}")
        inner = topic_folds(stories["topic"].isel(stimulus=np.flatnonzero(train)), min(outer.size, n_train_topics))
        inner_folds[int(k)] = (train, np.asarray(inner.values))
    layers = stories["layer"].values
    inner_acc = np.zeros((outer.size, layers.size))
    with one_thread():
        for j, layer in enumerate(layers):
            x, comps = _layer_matrix(stories, layer), _components_at(components, layer)
            for i, k in enumerate(outer):
                train, inner_fold = inner_folds[int(k)]
                predicted = _centroid_oof(x[train], codes[train], inner_fold, len(classes), comps)
                inner_acc[i, j] = float(np.mean(predicted == codes[train]))
    best = np.argmax(inner_acc, axis=1)
    chosen = layers[best]
    table = _rows(scored.sel(layer=layers).transpose("layer", "stimulus"))
    picked = table[best[np.searchsorted(outer, folds)], np.arange(folds.size)]
    selected = stories["emotion"].copy(data=picked.astype(stories["emotion"].dtype)).rename("selected")
    accuracy = accuracy_estimates(selected, n_bootstrap=n_bootstrap, n_permutations=n_permutations, seed=seed)[0]
    inner_da = xr.DataArray(inner_acc, dims=("fold", "layer"), coords={"fold": outer, "layer": layers},
                            name="inner_accuracy")
    return LayerSelection(layers=tuple(int(c) for c in chosen), accuracy=accuracy, inner_accuracy=inner_da,
                          predictions=selected)


def _default_layer(layers: Sequence[int], default_layer: int | None) -> int:
    if default_layer is not None:
        if default_layer not in layers:
            raise InputError(f"default layer {default_layer} is not among the analysed layers {list(layers)}")
        return int(default_layer)
    return default_layer_of(layers)


@dataclass(frozen=True)
class ProbeResult:
    """Everything :func:`run_probes` computed (see :meth:`to_dict` for the JSON schema).

    ``predictions`` holds the out-of-fold predictions: ``probe`` and ``centroid`` dims (layer, stimulus),
    one variable per baseline dims (stimulus,); ``fold`` dims (stimulus,) the shared topic folds;
    ``confusion`` dims (emotion, predicted): probe counts at the default layer, rows true.
    """

    n: int
    classes: tuple[str, ...]
    n_topics: int
    n_splits: int
    reduction: str | None
    layers: tuple[int, ...]
    probe: tuple[Estimate, ...]
    centroid: tuple[Estimate, ...]
    baselines: dict[str, Estimate | None]
    best_baseline: str
    margin: tuple[Estimate, ...]
    selected: LayerSelection | None
    default_layer: int
    confusion: xr.DataArray
    predictions: xr.Dataset
    fold: xr.DataArray
    skipped: dict[str, str] = field(default_factory=dict)
    centroid_refit: Estimate | None = None

    @property
    def chance(self) -> float:
        """1 / number of classes."""
        return 1.0 / len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: per-layer lists aligned with ``"layer"``; Estimate dicts; NaN as None."""
        return {
            "n": self.n, "n_classes": len(self.classes), "classes": list(self.classes), "n_topics": self.n_topics,
            "n_splits": self.n_splits, "chance": self.chance, "reduction": self.reduction,
            "layer": list(self.layers),
            "probe": [e.to_dict() for e in self.probe], "centroid": [e.to_dict() for e in self.centroid],
            "baselines": {k: None if v is None else v.to_dict() for k, v in self.baselines.items()},
            "best_baseline": self.best_baseline, "margin": [e.to_dict() for e in self.margin],
            "selected": (self.selected.to_dict() if self.selected is not None
                         else {"layers": [], "accuracy": None}),
            "default_layer": self.default_layer,
            "confusion_default": np.asarray(self.confusion.values).astype(int).tolist(),
            "centroid_refit_default": None if self.centroid_refit is None else self.centroid_refit.to_dict(),
            "skipped": dict(self.skipped),
        }


def _baseline_predictions(stories: xr.DataArray, texts: Sequence[str] | None, fold: xr.DataArray,
                          default: int, n_components: int | None, seed: int,
                          skipped: dict[str, str]) -> dict[str, xr.DataArray]:
    """Out-of-fold predictions (stimulus) of every baseline that can run; reasons for the others."""
    labels = stories["emotion"]
    out: dict[str, xr.DataArray] = {}
    if "n_tokens" in labels.coords or texts is not None:
        out["length"] = length_baseline(labels, fold, texts)
    else:
        skipped["length"] = "no n_tokens coordinate and no texts: no length information"
    if texts is not None:
        out["bag_of_words"] = bag_of_words_baseline(labels, fold, texts)
    else:
        skipped["bag_of_words"] = "no texts (stored with --store-text or found in the corpus): text baseline skipped"
    out["shuffled"] = shuffled_baseline(stories.sel(layer=default), labels, fold,
                                        lambda: probe_pipeline(n_components), seed=seed)
    return out


def run_probes(stories: xr.DataArray, texts: Sequence[str] | None = None, *,
               neutral_components: xr.DataArray | None = None, n_splits: int = 5,
               n_permutations: int = DEFAULT_PERMUTATIONS, n_bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0,
               default_layer: int | None = None, categories: Sequence[str] | None = None,
               n_components: int | None = None) -> ProbeResult:
    """Probes, centroid readout, baselines, margins and held-out layer selection on one set of topic folds.

    Parameters
    ----------
    stories : DataArray, dims (layer, stimulus, hidden), with ``emotion``, ``topic`` and (for the length
        baseline) ``n_tokens`` coordinates; numpy- or dask-backed (loaded one layer at a time).
    texts : the stories' texts in stimulus order (None: the bag-of-words baseline is skipped with a reason).
    neutral_components : DataArray, dims (layer, component, hidden): neutral PCs projected out of the
        centroid readout's vectors (``Vectors.components``); None: none.
    n_splits : number of topic-grouped folds (2 … number of topics).
    n_permutations, n_bootstrap : null draws and topic-cluster bootstrap resamples of every estimate.
    seed : seed of the shuffled baseline and the resampling.
    default_layer : the layer fixed in advance for the shuffled baseline and the confusion matrix
        (default: the analysed layer nearest round(2/3 × the largest layer index); ties: the shallower).
    categories : emotion order of ``classes`` and the confusion matrix (default: sorted labels).
    n_components : reduce each layer to this many PCA components inside every training fold (None: the
        full hidden size; the default is affordable on the built-in corpus).

    The best baseline is the more accurate of the text baselines (``length``, ``bag_of_words``); taking
    the maximum makes the margin conservative. ``shuffled`` is the empirical chance level, not a text
    model, and is the margin's reference only when no text baseline could run.
    """
    classes = _classes(stories, categories)
    fold = topic_folds(stories["topic"], n_splits)
    layers = [int(x) for x in stories["layer"].values]
    default = _default_layer(layers, default_layer)
    n_comp = _effective_components(n_components, stories.sizes["hidden"], fold)
    draw_seed, shuffle_seed = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(2))
    skipped: dict[str, str] = {}
    # each phase reads every layer afresh (a reduced basis is recomputed from the store) and frees it;
    # trim_heap returns the freed pages so that the phases' working sets do not pile up in the RSS
    probe = probe_predictions(stories, fold, n_components=n_comp)
    trim_heap()
    centroid = centroid_predictions(stories, fold, classes=classes, components=neutral_components)
    trim_heap()
    base_pred = _baseline_predictions(stories, texts, fold, default, n_comp, shuffle_seed, skipped)
    trim_heap()
    try:
        selection: LayerSelection | None = nested_layer_selection(
            stories, fold, probe, classes=classes, components=neutral_components, n_bootstrap=n_bootstrap,
            n_permutations=n_permutations, seed=draw_seed)
    except InputError as err:
        selection = None
        skipped["selected"] = str(err)
    trim_heap()
    resampling = {"n_bootstrap": n_bootstrap, "n_permutations": n_permutations, "seed": draw_seed}
    refit = centroid_refit_estimate(stories, fold, default, classes=classes, components=neutral_components,
                                    **resampling)
    scores = {name: accuracy_estimates(pred, **resampling)[0] for name, pred in base_pred.items()}
    text = [name for name in TEXT_BASELINES if name in scores]
    best = max(text, key=lambda name: scores[name].value) if text else "shuffled"
    baselines: dict[str, Estimate | None] = {name: scores.get(name) for name in (*TEXT_BASELINES, "shuffled")}
    labels = as_labels(stories["emotion"])
    counts = confusion_matrix(labels, as_labels(probe.sel(layer=default)), labels=classes)
    confusion = xr.DataArray(counts, dims=("emotion", "predicted"), coords={"emotion": classes, "predicted": classes},
                             name="confusion").assign_attrs(layer=default)
    predictions = xr.Dataset({"probe": probe, "centroid": centroid, **base_pred})
    return ProbeResult(
        n=labels.size, classes=tuple(classes), n_topics=len(set(as_labels(stories["topic"]))),
        n_splits=n_splits,
        reduction=None if n_comp is None else
        f"PCA to {n_comp} components fitted inside each training fold (after standardising)",
        layers=tuple(layers), probe=tuple(accuracy_estimates(probe, **resampling)),
        centroid=tuple(accuracy_estimates(centroid, **resampling)), baselines=baselines, best_baseline=best,
        margin=tuple(margin_estimates(probe, base_pred[best], **resampling)), selected=selection, default_layer=default,
        confusion=confusion, predictions=predictions, fold=fold, skipped=skipped, centroid_refit=refit)
