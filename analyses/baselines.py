"""Text-only and chance baselines for the emotion probes, on the probes' topic-grouped folds.

Every baseline returns out-of-fold predicted labels, dims ``(stimulus,)``, with the stimulus coordinates
of ``labels`` kept, so :func:`emovec.analyses.probes.accuracy_estimates` scores them exactly like a layer.
A fold structure is a ``fold`` DataArray (stimulus) holding each stimulus's test-fold index (see
:func:`emovec.analyses.probes.topic_folds`); models are fitted on the other folds only.

- ``length``: multinomial logistic regression on length alone: log token count and, when texts are
  given, log character and word counts (scaler fitted inside the folds).
- ``bag_of_words``: ``TfidfVectorizer`` (unigrams, sublinear tf) and logistic regression, both fitted
  inside the folds: the text-only unigram model that public reproductions found to match activation
  probes on LLM-written stories.
- ``shuffled``: any model (the layer probe's pipeline) trained on labels shuffled within the training
  fold and scored against the true test labels: the empirical chance level of the whole procedure.

Hyperparameters are fixed in advance (below), never tuned on the folds they are scored on. Fits run
with BLAS held to one thread (:func:`._common.one_thread`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import xarray as xr
from sklearn.base import ClassifierMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import PredefinedSplit, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from emovec_store.errors import InputError

from ._common import one_thread
from .stats import as_rng

#: Inverse L2 strength of the length model (3 standardised features: barely regularised).
LENGTH_C = 1.0
#: Inverse L2 strength of the tf-idf model; tf-idf rows have unit norm, so weights must be large (a
#: common a-priori choice for text classification; not tuned).
BAG_OF_WORDS_C = 10.0
MAX_ITER = 1000

ModelFactory = Callable[[], Pipeline | ClassifierMixin]


def _check_aligned(labels: xr.DataArray, fold: xr.DataArray) -> None:
    if labels.dims != ("stimulus",) or fold.dims != ("stimulus",) or labels.sizes != fold.sizes:
        raise InputError("labels and fold must both have dims (stimulus,) and the same length")


def _check_texts(labels: xr.DataArray, texts: Sequence[str]) -> np.ndarray:
    if len(texts) != labels.sizes["stimulus"]:
        raise InputError(f"got {len(texts)} texts for {labels.sizes['stimulus']} stimuli; texts must be "
                         "aligned with the stimulus order")
    return np.asarray([str(t) for t in texts], dtype=object)


def _labels(labels: xr.DataArray) -> np.ndarray:
    """Class labels as a str array (numpy ``StringDType`` from a store included)."""
    return np.asarray(labels.values, dtype=object).astype(str)


def _as_predictions(labels: xr.DataArray, predicted: np.ndarray, name: str) -> xr.DataArray:
    return labels.copy(data=np.asarray(predicted).astype(labels.dtype)).rename(name)


def fold_predictions(make_model: ModelFactory, features: np.ndarray, labels: xr.DataArray,
                     fold: xr.DataArray) -> np.ndarray:
    """Out-of-fold predicted labels of a fresh model per fold, shape ``(stimulus,)``.

    Parameters
    ----------
    make_model : returns an unfitted scikit-learn classifier (or pipeline).
    features : array-like with one row per stimulus (a 2-D array, or texts for a text pipeline).
    labels : DataArray, dims (stimulus,): the class labels.
    fold : DataArray, dims (stimulus,): test-fold index of each stimulus.
    """
    _check_aligned(labels, fold)
    with one_thread():
        return np.asarray(cross_val_predict(make_model(), features, _labels(labels),
                                            cv=PredefinedSplit(np.asarray(fold.values))))


def length_features(labels: xr.DataArray, texts: Sequence[str] | None = None) -> xr.DataArray:
    """Length features per stimulus, dims ``(stimulus, feature)``.

    ``log_tokens`` = log(1 + n_tokens) from the ``n_tokens`` coordinate of ``labels`` (when present);
    with texts also ``log_chars`` and ``log_words`` (log(1 + count)).

    Parameters
    ----------
    labels : DataArray, dims (stimulus,), optionally with an ``n_tokens`` coordinate.
    texts : stimulus texts aligned with ``labels`` (None: token counts only).
    """
    columns: dict[str, np.ndarray] = {}
    if "n_tokens" in labels.coords:
        columns["log_tokens"] = np.log1p(np.asarray(labels["n_tokens"].values, dtype=np.float64))
    if texts is not None:
        arr = _check_texts(labels, texts)
        columns["log_chars"] = np.log1p(np.asarray([len(t) for t in arr], dtype=np.float64))
        columns["log_words"] = np.log1p(np.asarray([len(t.split()) for t in arr], dtype=np.float64))
    if not columns:
        raise InputError("no length information: the stimuli have no n_tokens coordinate and no texts were given")
    data = np.stack(list(columns.values()), axis=1)
    return xr.DataArray(data, dims=("stimulus", "feature"), coords=labels.coords).assign_coords(feature=list(columns))


def length_baseline(labels: xr.DataArray, fold: xr.DataArray,
                    texts: Sequence[str] | None = None) -> xr.DataArray:
    """Out-of-fold predictions of logistic regression on :func:`length_features`, dims (stimulus,).

    Parameters
    ----------
    labels : DataArray, dims (stimulus,): the class labels (its ``n_tokens`` coordinate is a feature).
    fold : DataArray, dims (stimulus,): test-fold index of each stimulus.
    texts : stimulus texts aligned with ``labels`` (None: token counts only).
    """
    features = length_features(labels, texts)
    predicted = fold_predictions(
        lambda: make_pipeline(StandardScaler(), LogisticRegression(C=LENGTH_C, max_iter=MAX_ITER)),
        np.asarray(features.values), labels, fold)
    return _as_predictions(labels, predicted, "length")


def bag_of_words_pipeline() -> Pipeline:
    """The unigram text model: ``TfidfVectorizer(sublinear_tf=True)`` then logistic regression."""
    return make_pipeline(TfidfVectorizer(ngram_range=(1, 1), sublinear_tf=True),
                         LogisticRegression(C=BAG_OF_WORDS_C, max_iter=MAX_ITER))


def bag_of_words_baseline(labels: xr.DataArray, fold: xr.DataArray, texts: Sequence[str]) -> xr.DataArray:
    """Out-of-fold predictions of :func:`bag_of_words_pipeline` (vocabulary fitted per fold), dims (stimulus,).

    Parameters
    ----------
    labels : DataArray, dims (stimulus,): the class labels.
    fold : DataArray, dims (stimulus,): test-fold index of each stimulus.
    texts : stimulus texts aligned with ``labels``.
    """
    arr = _check_texts(labels, texts)
    return _as_predictions(labels, fold_predictions(bag_of_words_pipeline, arr, labels, fold), "bag_of_words")


def shuffled_baseline(features: xr.DataArray, labels: xr.DataArray, fold: xr.DataArray,
                      make_model: ModelFactory, seed: int | np.random.Generator | None = 0) -> xr.DataArray:
    """Predictions of ``make_model`` trained on training-fold labels shuffled within that fold, dims (stimulus,).

    Scored against the true labels this is the empirical chance of the procedure (class balance, fold
    structure and model included).

    Parameters
    ----------
    features : DataArray, dims (stimulus, hidden): one layer's activations.
    labels : DataArray, dims (stimulus,): the class labels.
    fold : DataArray, dims (stimulus,): test-fold index of each stimulus.
    make_model : returns an unfitted classifier (the layer probe's pipeline).
    seed : seed of the shuffles.
    """
    _check_aligned(labels, fold)
    rng = as_rng(seed)
    x = np.asarray(features.transpose("stimulus", ...).values, dtype=np.float64)
    y = _labels(labels)
    folds = np.asarray(fold.values)
    predicted = np.empty_like(y)
    with one_thread():
        for k in np.unique(folds):
            train, test = folds != k, folds == k
            model = make_model().fit(x[train], rng.permutation(y[train]))
            predicted[test] = model.predict(x[test])
    return _as_predictions(labels, predicted, "shuffled")
