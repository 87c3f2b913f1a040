"""Probes and baselines on synthetic pooled activations: planted structure found, no structure → null."""
from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from sklearn.model_selection import KFold, cross_val_score

from emovec.analyses.baselines import bag_of_words_baseline, length_baseline
from emovec.analyses.probes import (
    accuracy_estimates,
    centroid_predictions,
    centroid_refit_estimate,
    margin_estimates,
    nested_layer_selection,
    probe_pipeline,
    probe_predictions,
    run_probes,
    topic_folds,
)
from emovec_store.errors import InputError

EMOTIONS = ["joy", "calm", "anger", "grief"]
FILLER = [f"word{i}" for i in range(300)]
FAST = {"n_permutations": 200, "n_bootstrap": 200}


def stories(*, signal: float | list[float] = 0.0, n_topics: int = 6, per: int = 3, hidden: int = 16,
            layers: list[int] | None = None, topic_shift: float = 0.0, seed: int = 0,
            emotion: np.ndarray | None = None, topic: np.ndarray | None = None) -> xr.DataArray:
    """Gaussian activations, dims (layer, stimulus, hidden); class means scaled by ``signal`` per layer."""
    rng = np.random.default_rng(seed)
    layers = layers if layers is not None else [0, 1, 2]
    if emotion is None or topic is None:
        emotion = np.tile(np.repeat(np.arange(len(EMOTIONS)), per), n_topics)
        topic = np.repeat(np.arange(n_topics), len(EMOTIONS) * per)
    signals = np.broadcast_to(np.asarray(signal, dtype=np.float64), (len(layers),))
    means = rng.standard_normal((len(EMOTIONS), hidden))
    shifts = rng.standard_normal((int(topic.max()) + 1, hidden))
    x = (rng.standard_normal((len(layers), emotion.size, hidden)) + signals[:, None, None] * means[emotion]
         + topic_shift * shifts[topic] + 2.0)
    return xr.DataArray(x.astype(np.float32), dims=("layer", "stimulus", "hidden"), coords={
        "layer": layers, "stimulus": [f"s{i:04d}" for i in range(emotion.size)],
        "emotion": ("stimulus", np.asarray(EMOTIONS)[emotion]), "topic": ("stimulus", [f"t{t}" for t in topic]),
        "n_tokens": ("stimulus", rng.integers(80, 120, emotion.size))})


def texts_for(pooled: xr.DataArray, *, with_class_word: bool, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for e in pooled["emotion"].values:
        words = list(rng.choice(FILLER, 8))
        out.append(" ".join(words + ([f"feeling{e}"] if with_class_word else [])))
    return out


def covers(est: dict, value: float) -> bool:
    return est["ci"][0] <= value <= est["ci"][1]


def test_topic_folds_never_put_one_topic_in_two_folds() -> None:
    pooled = stories(n_topics=7)
    fold = topic_folds(pooled["topic"], 5)
    assert fold.dims == ("stimulus",)
    assert sorted(set(fold.values.tolist())) == [0, 1, 2, 3, 4]
    frame = fold.to_dataframe()
    assert (frame.groupby("topic")["fold"].nunique() == 1).all()
    result = run_probes(pooled, **FAST)
    assert (result.fold.values == fold.values).all()


def test_planted_classes_are_recovered_with_tight_ci_and_small_p() -> None:
    pooled = stories(signal=3.0)
    result = run_probes(pooled, texts_for(pooled, with_class_word=False), **FAST)
    d = result.to_dict()
    chance = d["chance"]
    assert chance == 0.25 and d["n"] == 72 and d["n_topics"] == 6 and d["n_classes"] == 4
    for readout in ("probe", "centroid"):
        for est in d[readout]:
            assert est["value"] > 0.9 and est["ci"][0] > chance
            assert est["p"] <= 2 / (FAST["n_permutations"] + 1) and est["n"] == 72
    # a sign-flip over 6 topics cannot go below about 2**-6: of 200 flips, Binomial(200, 1/64) land on
    # the all-positive pattern (mean 3.1; more than 10 has probability 0.0004), so p <= (10 + 1)/201
    for est in d["margin"]:
        assert est["ci"][0] > 0 and est["p"] <= 11 / (FAST["n_permutations"] + 1)
    assert d["best_baseline"] in ("length", "bag_of_words")
    assert covers(d["baselines"]["shuffled"], chance) and covers(d["baselines"]["bag_of_words"], chance)
    assert d["selected"]["accuracy"]["ci"][0] > chance and len(d["selected"]["layers"]) == d["n_splits"]
    confusion = np.asarray(d["confusion_default"])
    assert confusion.sum() == 72 and np.trace(confusion) > 0.9 * 72
    assert d["default_layer"] == 1 and d["skipped"] == {}
    refit = d["centroid_refit_default"]
    assert refit["value"] == d["centroid"][1]["value"] and refit["p"] == 1 / (FAST["n_permutations"] + 1)


def test_pure_noise_gives_a_null() -> None:
    pooled = stories(signal=0.0, n_topics=8, per=4, seed=1)
    d = run_probes(pooled, texts_for(pooled, with_class_word=False), **FAST).to_dict()
    chance = d["chance"]
    for est in d["probe"] + d["centroid"] + [d["selected"]["accuracy"]]:
        assert covers(est, chance) and est["p"] > 0.05
        assert abs(est["null_mean"] - chance) < 0.02
    for est in d["baselines"].values():
        assert abs(est["value"] - chance) < 0.1 and est["p"] > 0.05
    refit = d["centroid_refit_default"]
    assert refit["p"] > 0.05 and abs(refit["null_mean"] - chance) < 0.03


def test_topic_confound_does_not_inflate_grouped_accuracy() -> None:
    """Each topic is dominated by one emotion and shifts the activations: only the topic is learnable."""
    emotion, topic = [], []
    for t in range(8):
        labels = [t % 4] * 9 + [e for e in range(4) if e != t % 4]
        emotion += labels
        topic += [t] * len(labels)
    pooled = stories(signal=0.0, topic_shift=6.0, emotion=np.asarray(emotion), topic=np.asarray(topic), seed=2)
    x, y = pooled.sel(layer=1).values, pooled["emotion"].values
    ungrouped = cross_val_score(probe_pipeline(), x, y, cv=KFold(5, shuffle=True, random_state=0)).mean()
    assert ungrouped > 0.6  # the confound is real: ungrouped CV would report it as emotion information
    d = run_probes(pooled, **FAST).to_dict()
    for est in d["probe"] + d["centroid"]:
        assert est["value"] < 0.4 and est["p"] > 0.05


def test_bag_of_words_reads_class_words_and_is_chance_on_random_texts() -> None:
    pooled = stories(signal=0.0, n_topics=8, per=4, seed=3)
    fold = topic_folds(pooled["topic"])
    labels = pooled["emotion"]
    worded = bag_of_words_baseline(labels, fold, texts_for(pooled, with_class_word=True))
    random = bag_of_words_baseline(labels, fold, texts_for(pooled, with_class_word=False))
    assert worded.dims == ("stimulus",) and (worded["emotion"].values == labels.values).all()
    hit, miss = accuracy_estimates(worded, **FAST)[0], accuracy_estimates(random, **FAST)[0]
    assert hit.value > 0.9 and hit.ci is not None and hit.ci[0] > 0.25
    assert miss.ci is not None and miss.ci[0] <= 0.25 <= miss.ci[1] and miss.p is not None and miss.p > 0.05
    d = run_probes(pooled, texts_for(pooled, with_class_word=True), **FAST).to_dict()
    assert d["best_baseline"] == "bag_of_words"
    assert all(est["ci"][1] < 0 for est in d["margin"])  # activations carry nothing; the words everything


def test_without_texts_the_bag_of_words_baseline_is_skipped_with_a_reason() -> None:
    d = run_probes(stories(signal=1.0), None, **FAST).to_dict()
    assert d["baselines"]["bag_of_words"] is None and "texts" in d["skipped"]["bag_of_words"]
    assert d["best_baseline"] == "length" and d["baselines"]["length"] is not None


def test_length_baseline_finds_a_length_confound() -> None:
    pooled = stories(signal=0.0, n_topics=8, per=4, seed=4)
    codes = np.searchsorted(sorted(EMOTIONS), pooled["emotion"].values)
    pooled = pooled.assign_coords(n_tokens=("stimulus", 60 + 40 * codes + pooled["n_tokens"].values % 5))
    est = accuracy_estimates(length_baseline(pooled["emotion"], topic_folds(pooled["topic"])), **FAST)[0]
    assert est.value > 0.9 and est.p is not None and est.p <= 2 / (FAST["n_permutations"] + 1)
    assert run_probes(pooled, **FAST).best_baseline == "length"


def test_nested_selection_picks_the_planted_layer_from_training_folds() -> None:
    pooled = stories(signal=[0.0, 0.0, 3.0, 0.0], layers=[0, 4, 8, 12], n_topics=8)
    d = run_probes(pooled, **FAST).to_dict()
    assert d["selected"]["layers"] == [8] * 5 and d["selected"]["accuracy"]["value"] > 0.9
    assert d["default_layer"] == 8 and d["layer"] == [0, 4, 8, 12]


def test_an_outer_test_fold_never_influences_its_own_layer_choice() -> None:
    """A strong signal planted at layer 0 in fold 0's stories only: fold 0 still picks the layer it trained on."""
    pooled = stories(signal=[0.0, 1.5, 0.0], layers=[0, 1, 2], n_topics=10)
    fold = topic_folds(pooled["topic"])
    codes = np.searchsorted(sorted(EMOTIONS), pooled["emotion"].values)
    planted = np.zeros(pooled.shape)
    planted[0, :, :4] = 8.0 * np.eye(4)[codes] * (fold.values == 0)[:, None]
    leaky = pooled + planted
    honest = nested_layer_selection(pooled, fold, probe_predictions(pooled, fold), **FAST)
    tempted = nested_layer_selection(leaky, fold, probe_predictions(leaky, fold), **FAST)
    assert honest.layers[0] == tempted.layers[0] == 1
    assert (honest.inner_accuracy.sel(fold=0) == tempted.inner_accuracy.sel(fold=0)).all()
    assert tempted.inner_accuracy.dims == ("fold", "layer")


def test_nested_selection_with_two_topics_is_skipped_with_a_reason() -> None:
    d = run_probes(stories(signal=1.0, n_topics=2), n_splits=2, **FAST).to_dict()
    assert d["selected"] == {"layers": [], "accuracy": None} and "2 topics" in d["skipped"]["selected"]
    assert d["n_splits"] == 2 and len(d["probe"]) == 3


def test_neutral_components_are_projected_out_of_the_centroid_vectors() -> None:
    """The class signal lies in one plane: removing that plane leaves the centroid readout at chance."""
    pooled = stories(signal=0.0, n_topics=8, per=4, seed=5)
    codes = np.searchsorted(sorted(EMOTIONS), pooled["emotion"].values)
    plane = np.zeros((2, pooled.sizes["hidden"]))
    plane[0, 3] = plane[1, 4] = 1.0
    directions = np.asarray([plane[0], -plane[0], plane[1], -plane[1]])
    pooled = pooled + xr.DataArray(4.0 * directions[codes], dims=("stimulus", "hidden"))
    components = xr.DataArray(np.broadcast_to(plane, (3, *plane.shape)), dims=("layer", "component", "hidden"),
                              coords={"layer": pooled["layer"].values})
    fold = topic_folds(pooled["topic"])
    kept = accuracy_estimates(centroid_predictions(pooled, fold), **FAST)
    removed = accuracy_estimates(centroid_predictions(pooled, fold, components=components), **FAST)
    assert all(e.value > 0.9 for e in kept)
    assert all(e.ci is not None and e.ci[0] <= 0.25 <= e.ci[1] for e in removed)


def test_pca_reduction_inside_folds_is_reported() -> None:
    pooled = stories(signal=3.0)
    reduced = run_probes(pooled, n_components=4, **FAST).to_dict()
    assert reduced["reduction"] is not None and "4 components" in reduced["reduction"]
    assert all(est["value"] > 0.9 for est in reduced["probe"])
    assert run_probes(pooled, n_components=64, **FAST).to_dict()["reduction"] is None  # ≥ hidden: no reduction


def test_margin_of_a_readout_over_itself_is_exactly_zero() -> None:
    pooled = stories(signal=1.0)
    probe = probe_predictions(pooled, topic_folds(pooled["topic"]))
    (est,) = margin_estimates(probe.sel(layer=1), probe.sel(layer=1), **FAST)
    assert est.value == 0 and est.ci == (0.0, 0.0) and est.p == 1.0


def test_dask_input_gives_identical_results() -> None:
    pooled = stories(signal=0.5)
    texts = texts_for(pooled, with_class_word=True)
    lazy = pooled.copy(data=da.from_array(pooled.values, chunks=(1, 20, 16)))
    assert run_probes(lazy, texts, **FAST).to_dict() == run_probes(pooled, texts, **FAST).to_dict()


def test_to_dict_has_exactly_the_documented_keys() -> None:
    d = run_probes(stories(signal=1.0), **FAST).to_dict()
    assert set(d) == {"n", "n_classes", "classes", "n_topics", "n_splits", "chance", "reduction", "layer", "probe",
                      "centroid", "baselines", "best_baseline", "margin", "selected", "default_layer",
                      "confusion_default", "skipped", "centroid_refit_default"}
    assert set(d["baselines"]) == {"length", "bag_of_words", "shuffled"}
    assert set(d["selected"]) == {"layers", "accuracy"}
    assert len(d["probe"]) == len(d["centroid"]) == len(d["margin"]) == len(d["layer"]) == 3
    assert set(d["probe"][0]) >= {"value", "ci", "n", "p"}


@pytest.mark.parametrize(("change", "message"), [
    ({"topic": ["t0"] * 72}, "at least 2 topics"),
    ({"emotion": ["joy"] * 72}, "at least 2 emotions"),
    ({"topic": [""] + ["t1"] * 71}, "no topic"),
])
def test_too_few_topics_or_classes_is_one_clear_error(change: dict, message: str) -> None:
    pooled = stories().assign_coords({k: ("stimulus", v) for k, v in change.items()})
    with pytest.raises(InputError, match=message):
        run_probes(pooled, **FAST)


def test_more_folds_than_topics_is_refused() -> None:
    with pytest.raises(InputError, match="n_splits"):
        run_probes(stories(n_topics=3), **FAST)


def test_store_labels_of_numpy_string_dtype_are_read() -> None:
    pooled = stories(signal=1.0)
    sdt = np.dtypes.StringDType()
    texts = texts_for(pooled, with_class_word=True)
    typed = pooled.assign_coords({c: ("stimulus", np.asarray(pooled[c].values, dtype=sdt))
                                  for c in ("emotion", "topic")})
    assert typed["emotion"].dtype.kind == "T"
    assert run_probes(typed, texts, **FAST).to_dict() == run_probes(pooled, texts, **FAST).to_dict()


def test_the_full_refit_null_refits_on_shuffled_training_labels() -> None:
    """Each shuffle refits on shuffled labels: a readout that memorised the true labels would give a null
    near its observed accuracy; here the null sits at chance while the observed accuracy is high, and the
    p-value is (k + 1)/(n + 1) with the CI of the fixed-prediction estimate (same draws)."""
    pooled = stories(signal=1.2, seed=3)
    fold = topic_folds(pooled["topic"], 5)
    refit = centroid_refit_estimate(pooled, fold, 2, n_permutations=99, n_bootstrap=99, seed=5)
    fixed = accuracy_estimates(centroid_predictions(pooled, fold).sel(layer=2), n_permutations=99, n_bootstrap=99,
                               seed=5)[0]
    assert refit.value == fixed.value and refit.ci == fixed.ci and refit.n == 72
    assert refit.value > 0.5 and refit.null_mean is not None and abs(refit.null_mean - 0.25) < 0.05
    assert refit.p is not None and round(refit.p * 100, 9) == int(round(refit.p * 100))
