"""Geometry of emotion vectors: planted structure is recovered, no structure comes out null."""
from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from sklearn.linear_model import Ridge
from sklearn.metrics import adjusted_rand_score

from emovec.analyses.geometry import (
    GeometryResult,
    _ari,
    _loeo_projections,
    bootstrap_cosines,
    bootstrap_pca_scores,
    cosine_matrix,
    cv_norm_correlation,
    kmeans_ari,
    pc_norm_correlation,
    quadrant_cohesion,
    rsa_norms,
    run_geometry,
    unit_pca,
)
from emovec.analyses.stats import stratified_bootstrap_indices
from emovec.analyses.vectors import emotion_vectors
from emovec_store.errors import InputError

P = 200  # permutations in tests
B = 200  # bootstrap replicates in tests
QUADRANTS = ("pleasant-high", "pleasant-low", "unpleasant-high", "unpleasant-low")


def synthetic(*, n_layers: int = 2, n_emotions: int = 12, per: int = 12, hidden: int = 24, valence: float = 0.0,
              arousal: float = 0.0, quadrant: float = 0.0, noise: float = 1.0, seed: int = 0,
              neutral: int = 0) -> tuple[xr.DataArray, xr.Dataset, xr.DataArray | None]:
    """Stories whose emotion means are ``valence·v·a1 + arousal·a·a2 + quadrant·centroid`` plus story noise.

    Layer ``i`` scales the story noise by ``1 + i`` (so layers differ). Returns stories, the emotions
    table and optionally neutral texts (pure noise plus a shared offset).
    """
    rng = np.random.default_rng(seed)
    names = [f"e{i:02d}" for i in range(n_emotions)]
    val = rng.uniform(0, 1, n_emotions)
    aro = rng.uniform(0, 1, n_emotions)
    quad = np.array([QUADRANTS[i % 4] for i in range(n_emotions)])
    basis = np.linalg.qr(rng.standard_normal((hidden, 6)))[0].T
    centroid = basis[2:][np.arange(n_emotions) % 4]
    means = (valence * (val - 0.5)[:, None] * basis[0] + arousal * (aro - 0.5)[:, None] * basis[1]
             + quadrant * centroid)
    scale = (1.0 + np.arange(n_layers))[:, None, None, None]
    x = means[None, :, None, :] + noise * scale * rng.standard_normal((n_layers, n_emotions, per, hidden))
    x = x.reshape(n_layers, n_emotions * per, hidden).astype(np.float32)
    stories = xr.DataArray(x, dims=("layer", "stimulus", "hidden"),
                           coords={"layer": np.arange(n_layers), "stimulus": [f"s{i}" for i in range(x.shape[1])],
                                   "emotion": ("stimulus", np.repeat(names, per)),
                                   "topic": ("stimulus", [f"t{i % 4}" for i in range(x.shape[1])])})
    table = xr.Dataset({"quadrant": ("emotion", quad), "valence": ("emotion", val), "arousal": ("emotion", aro),
                        "dominance": ("emotion", np.full(n_emotions, np.nan))}, coords={"emotion": names})
    texts = None
    if neutral:
        offset = rng.standard_normal(hidden)
        y = offset + rng.standard_normal((n_layers, neutral, hidden)) * np.linspace(3, 0.1, hidden)
        texts = xr.DataArray(y.astype(np.float32), dims=("layer", "stimulus", "hidden"),
                             coords={"layer": np.arange(n_layers), "stimulus": [f"n{i}" for i in range(neutral)]})
    return stories, table, texts


def vectors_of(stories: xr.DataArray) -> xr.DataArray:
    return emotion_vectors(stories, denoise=None).vectors


def is_permutation_p(p: float, n: int = P) -> bool:
    k = p * (n + 1) - 1
    return abs(k - round(k)) < 1e-9 and 0 <= round(k) <= n


# ---------------------------------------------------------------- cosines and the bootstrap

def test_cosine_matrix_is_symmetric_with_unit_diagonal() -> None:
    stories, _, _ = synthetic(valence=3.0)
    cos = cosine_matrix(vectors_of(stories))
    assert cos.dims == ("layer", "emotion", "emotion_b")
    values = cos.values
    np.testing.assert_allclose(values, np.swapaxes(values, 1, 2), atol=1e-12)
    np.testing.assert_allclose(np.diagonal(values, axis1=1, axis2=2), 1.0, atol=1e-12)
    v = vectors_of(stories).values[0]
    assert values[0, 1, 2] == pytest.approx(v[1] @ v[2] / np.linalg.norm(v[1]) / np.linalg.norm(v[2]))


@pytest.mark.parametrize("baseline", ["mean", "neutral"])
def test_bootstrap_replicates_equal_rerunning_the_recipe_on_resampled_stories(baseline: str) -> None:
    stories, _, neutral = synthetic(valence=2.0, neutral=10)
    vec = emotion_vectors(stories, neutral=neutral, baseline=baseline, denoise=0.5)
    reps = bootstrap_cosines(vec.vectors, stories, components=vec.components, n_bootstrap=3, rng=7)
    codes = np.repeat(np.arange(stories.sizes["stimulus"] // 12), 12)
    draws = stratified_bootstrap_indices(codes, 3, np.random.default_rng(7))
    for b in range(3):
        again = emotion_vectors(stories.isel(stimulus=draws[b]), neutral=neutral, baseline=baseline,
                                denoise=0.5)
        np.testing.assert_allclose(reps.isel(replicate=b).values, cosine_matrix(again.vectors).values, atol=1e-5)


def test_bootstrap_refuses_stories_that_do_not_make_the_vectors() -> None:
    stories, _, _ = synthetic(valence=2.0)
    other, _, _ = synthetic(valence=2.0, seed=5)
    with pytest.raises(InputError, match="do not reproduce the vectors"):
        bootstrap_cosines(vectors_of(stories), other, n_bootstrap=2, rng=0)
    with pytest.raises(InputError, match="no story of emotion"):
        bootstrap_cosines(vectors_of(stories), stories.isel(stimulus=slice(0, 24)), n_bootstrap=2, rng=0)


# ---------------------------------------------------------------- quadrants

def test_cohesion_and_kmeans_detect_planted_quadrant_clusters() -> None:
    stories, table, _ = synthetic(quadrant=3.0)
    vectors = vectors_of(stories)
    reps = bootstrap_cosines(vectors, stories, n_bootstrap=B, rng=1)
    cohesion = quadrant_cohesion(vectors, table["quadrant"], n_permutations=P, rng=2, replicates=reps)
    ari = kmeans_ari(vectors, table["quadrant"], seed=3, n_permutations=P)
    for c, a in zip(cohesion, ari):
        assert c.value > 0.3 and c.ci is not None and c.ci[0] > 0.1
        assert c.p == pytest.approx(1 / (P + 1)) and c.n == 12 and c.null_mean is not None
        assert abs(c.null_mean) < 0.05
        assert a.value == pytest.approx(1.0) and a.p is not None and a.p < 0.01 and a.ci is None


def test_cohesion_and_kmeans_are_null_without_quadrant_structure() -> None:
    stories, table, _ = synthetic(valence=0.0, seed=3)
    vectors = vectors_of(stories)
    cohesion = quadrant_cohesion(vectors, table["quadrant"], n_permutations=P, rng=2)
    ari = kmeans_ari(vectors, table["quadrant"], seed=3, n_permutations=P)
    for c, a in zip(cohesion, ari):
        assert c.p is not None and c.p > 0.05 and is_permutation_p(c.p) and c.ci is None
        assert a.p is not None and a.p > 0.05 and is_permutation_p(a.p)


def test_ari_kernel_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    clusters = rng.integers(0, 4, 30)
    labels = rng.permuted(np.tile(rng.integers(0, 3, 30), (20, 1)), axis=1)  # shuffles of one labelling
    ours = _ari(clusters, labels)
    np.testing.assert_allclose(ours, [adjusted_rand_score(lab, clusters) for lab in labels], atol=1e-12)


# ---------------------------------------------------------------- PCA and the norms

def test_unit_pca_signs_are_deterministic_and_replicate_scores_reproduce_it() -> None:
    stories, _, _ = synthetic(valence=3.0, arousal=2.0)
    vectors = vectors_of(stories)
    pca = unit_pca(vectors)
    assert pca.scores.dims == ("layer", "emotion", "component") and pca.scores.sizes["component"] == 5
    ratio = pca.explained.values
    assert (np.diff(ratio, axis=1) <= 1e-12).all() and (ratio.sum(axis=1) <= 1 + 1e-12).all()
    # signs follow the loadings (largest loading positive), so negating every vector negates the scores
    np.testing.assert_allclose(unit_pca(-vectors).scores.values, -pca.scores.values, atol=1e-10)
    same = cosine_matrix(vectors).expand_dims(replicate=2).transpose("layer", "replicate", "emotion", "emotion_b")
    scores = bootstrap_pca_scores(same, pca)
    np.testing.assert_allclose(scores.isel(replicate=1).values, pca.scores.values, atol=1e-8)


def test_planted_valence_axis_gives_r_near_one_with_tight_ci() -> None:
    stories, table, _ = synthetic(n_emotions=16, valence=12.0, arousal=5.0, noise=0.5)
    vectors = vectors_of(stories)
    pca = unit_pca(vectors)
    scores = bootstrap_pca_scores(bootstrap_cosines(vectors, stories, n_bootstrap=B, rng=1), pca)
    val = pc_norm_correlation(vectors, table["valence"], n_permutations=P, rng=2, pca=pca, boot_scores=scores)
    aro = pc_norm_correlation(vectors, table["arousal"], n_permutations=P, rng=3, pca=pca, boot_scores=scores)
    for i in range(2):
        pc1, best = val.pc1[i], val.best[i]
        assert pc1.value > 0.95 and pc1.ci is not None and pc1.ci[0] > 0.9 and pc1.ci[1] - pc1.ci[0] < 0.1
        assert pc1.p == pytest.approx(1 / (P + 1)) and pc1.n == 16
        assert val.best_pc[i] == 1 and best.value == pytest.approx(pc1.value) and best.p == pytest.approx(1 / (P + 1))
        assert aro.best_pc[i] == 2 and aro.pc2[i].value > 0.8 and aro.pc2[i].p == pytest.approx(1 / (P + 1))
    cv = cv_norm_correlation(vectors, table["valence"], n_permutations=P, rng=4)
    for e in cv:
        assert e.value > 0.9 and e.ci is not None and e.ci[0] > 0.7 and e.p == pytest.approx(1 / (P + 1))
    rsa = rsa_norms(vectors, table, n_permutations=P, rng=5)
    assert all(e.value > 0.5 and e.p == pytest.approx(1 / (P + 1)) for e in rsa)


def test_pure_noise_gives_null_correlations() -> None:
    stories, table, _ = synthetic(n_emotions=16, seed=11)
    vectors = vectors_of(stories)
    reps = bootstrap_cosines(vectors, stories, n_bootstrap=B, rng=1)
    pca = unit_pca(vectors)
    val = pc_norm_correlation(vectors, table["valence"], n_permutations=P, rng=2, pca=pca,
                              boot_scores=bootstrap_pca_scores(reps, pca))
    cv = cv_norm_correlation(vectors, table["valence"], n_permutations=P, rng=4)
    rsa = rsa_norms(vectors, table, n_permutations=P, rng=5, replicates=reps)
    for est in (*val.pc1, *val.pc2):
        assert est.ci is not None and est.ci[0] < 0 < est.ci[1]
        assert est.p is not None and est.p > 0.05 and is_permutation_p(est.p)
    for est in val.best:
        assert est.p is not None and est.p > 0.05
    for est in (*cv, *rsa):  # chance is the null mean (below 0 for leave-one-out r), and the CI covers it
        assert est.p is not None and est.p > 0.05 and is_permutation_p(est.p)
        assert est.ci is not None and est.null_mean is not None and est.ci[0] < est.null_mean < est.ci[1]
    for est in rsa:
        assert est.ci is not None and est.ci[0] < 0 < est.ci[1]


def test_loeo_projections_match_sklearn_ridge_with_inner_loo_choice() -> None:
    rng = np.random.default_rng(0)
    u = rng.standard_normal((8, 20))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    y = u @ rng.standard_normal(20) + 0.3 * rng.standard_normal(8)
    alphas = np.array([1e-2, 1.0, 1e2])
    ours = _loeo_projections(u @ u.T, y[:, None], alphas)[:, 0]
    for i in range(8):
        train = np.delete(np.arange(8), i)
        xc = u[train] - u[train].mean(axis=0)
        lam = np.linalg.eigvalsh(xc @ xc.T)
        scale = lam.sum() / (len(train) - 1)
        errors = []
        for a in alphas * scale:
            loo = [y[train][j] - Ridge(alpha=a).fit(np.delete(u[train], j, 0), np.delete(y[train], j)).predict(
                u[train][j:j + 1])[0] for j in range(len(train))]
            errors.append(np.mean(np.square(loo)))
        model = Ridge(alpha=alphas[int(np.argmin(errors))] * scale).fit(u[train], y[train])
        assert ours[i] == pytest.approx(model.predict(u[i:i + 1])[0] - y[train].mean(), abs=1e-8)


# ---------------------------------------------------------------- run_geometry

SCHEMA = {"n_emotions", "emotions", "quadrants", "n_norms", "layer", "cosine", "cohesion", "kmeans_ari",
          "pca_explained", "pca_scores", "pc_valence", "pc_arousal", "cv_valence", "cv_arousal", "rsa_norms",
          "mean_vector_norm", "skipped"}


def test_run_geometry_schema_and_dask_equals_numpy() -> None:
    stories, table, neutral = synthetic(valence=4.0, quadrant=1.0, neutral=8)
    vec = emotion_vectors(stories, neutral=neutral, denoise=0.5)
    kwargs = {"components": vec.components, "n_permutations": P, "n_bootstrap": B, "seed": 3}
    result = run_geometry(vec.vectors, stories, table, **kwargs)
    lazy = run_geometry(vec.vectors.chunk({"layer": 1}), stories.chunk({"layer": 1, "stimulus": 50}), table,
                        **kwargs)
    assert isinstance(result, GeometryResult)
    d = result.to_dict()
    assert set(d) == SCHEMA and d == lazy.to_dict()
    json.dumps(d, allow_nan=False)
    n = 12
    assert d["n_emotions"] == n == d["n_norms"] and d["layer"] == [0, 1] and d["skipped"] == {}
    assert np.asarray(d["cosine"]).shape == (2, n, n) and np.asarray(d["pca_scores"]).shape == (2, n, 2)
    assert np.asarray(d["pca_explained"]).shape == (2, 5)
    for key in ("cohesion", "kmeans_ari", "cv_valence", "cv_arousal", "rsa_norms"):
        assert len(d[key]) == 2 and {"value", "ci", "n", "p"} <= set(d[key][0])
    for key in ("pc_valence", "pc_arousal"):
        assert set(d[key]) == {"pc1", "pc2", "best_pc", "best"} and all(1 <= b <= 5 for b in d[key]["best_pc"])
    norms = np.linalg.norm(vec.vectors.values, axis=-1).mean(axis=1)
    np.testing.assert_allclose(d["mean_vector_norm"], norms)
    assert result.cosine.dims == ("layer", "emotion", "emotion_b")
    assert d["pc_valence"]["pc1"][0]["value"] > 0.8


def test_missing_norms_and_quadrants_are_skipped_not_raised() -> None:
    stories, table, _ = synthetic()
    vectors = vectors_of(stories)
    few = table.assign(valence=table["valence"].where(np.arange(12) < 3), quadrant=table["quadrant"].where(
        np.arange(12) < 0, ""))
    d = run_geometry(vectors, stories, few, n_permutations=P, n_bootstrap=B).to_dict()
    assert d["n_norms"] == 3
    for key in ("pc_valence", "pc_arousal", "cv_valence", "cv_arousal", "rsa_norms", "cohesion", "kmeans_ari"):
        assert d[key] is None and key in d["skipped"]
    bare = run_geometry(vectors, None, table.drop_vars(["valence", "arousal", "quadrant"]), n_permutations=P).to_dict()
    assert bare["n_norms"] == 0 and "bootstrap" in bare["skipped"] and bare["cosine"]


def test_emotions_with_nan_norms_are_dropped_and_counted() -> None:
    stories, table, _ = synthetic(valence=6.0)
    partial = table.assign(arousal=table["arousal"].where(np.arange(12) >= 2))
    d = run_geometry(vectors_of(stories), stories, partial, n_permutations=P, n_bootstrap=B).to_dict()
    assert d["n_norms"] == 10
    assert all(e["n"] == 10 for e in d["cv_valence"] + d["rsa_norms"] + d["pc_valence"]["pc1"])
    assert all(e["n"] == 12 for e in d["cohesion"])


def test_functions_refuse_inputs_they_cannot_score() -> None:
    stories, table, _ = synthetic()
    vectors = vectors_of(stories)
    with pytest.raises(InputError, match="two quadrants"):
        quadrant_cohesion(vectors, ["q"] * 12, n_permutations=P, rng=0)
    with pytest.raises(InputError, match="need ≥ 4"):
        pc_norm_correlation(vectors, table["valence"].where(np.arange(12) < 3), n_permutations=P, rng=0)
    with pytest.raises(InputError, match="dims"):
        cosine_matrix(vectors.rename(hidden="unit"))


def test_string_dtype_labels_from_the_store_give_the_same_result() -> None:
    stories, table, _ = synthetic(valence=3.0)
    vectors = vectors_of(stories)
    sdt = np.dtypes.StringDType()
    names = np.asarray(table["emotion"].values.tolist(), dtype=sdt)
    store_like = table.assign(quadrant=("emotion", np.asarray(table["quadrant"].values.tolist(), dtype=sdt)))
    store_like = store_like.assign_coords(emotion=names)
    labelled = stories.assign_coords(emotion=("stimulus", np.asarray(stories["emotion"].values.tolist(), dtype=sdt)))
    kwargs = {"n_permutations": P, "n_bootstrap": 20, "seed": 1}
    assert (run_geometry(vectors, labelled, store_like, **kwargs).to_dict()
            == run_geometry(vectors, stories, table, **kwargs).to_dict())


def test_replicate_counts_are_the_stratified_bootstrap_draws_in_a_compact_dtype() -> None:
    """The per-emotion counts are those of :func:`stratified_bootstrap_indices` (same generator), one
    byte per story and replicate for groups of up to 255 stories, and give the weights (count − 1)/size."""
    from emovec.analyses.geometry import _replicate_counts, _weights

    codes = np.repeat(np.arange(5), [3, 7, 2, 300, 4])
    sizes, n = np.bincount(codes), 50
    draws = stratified_bootstrap_indices(codes, n, np.random.default_rng(3))
    expected = np.stack([np.bincount(row, minlength=codes.size) for row in draws])
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    counts = _replicate_counts(sizes, n, np.random.default_rng(3))
    assert [c.dtype for c in counts] == [np.uint8, np.uint8, np.uint8, np.uint16, np.uint8]
    for e in range(5):
        np.testing.assert_array_equal(counts[e], expected[:, bounds[e]:bounds[e + 1]])
        np.testing.assert_array_equal(_weights(counts[e][10:20], int(sizes[e])),
                                      (expected[10:20, bounds[e]:bounds[e + 1]] - 1.0) / sizes[e])


@pytest.mark.parametrize("baseline", ["mean", "neutral"])
def test_a_layer_over_the_budget_is_streamed_to_the_same_replicates(baseline: str) -> None:
    """Over the memory budget no layer is held: the stories stream by chunk and slice of rows, the
    replicates by block; the cosines equal the in-memory ones (up to the order of float sums)."""
    stories, _, neutral = synthetic(valence=2.0, neutral=10, per=7)
    mixed = stories.isel(stimulus=np.random.default_rng(1).permutation(stories.sizes["stimulus"]))
    vec = emotion_vectors(mixed, neutral=neutral, baseline=baseline, denoise=0.5)
    kwargs = {"components": vec.components, "n_bootstrap": 30, "rng": 5}
    whole = bootstrap_cosines(vec.vectors, mixed, **kwargs)
    for budget in (1e-6, 0.002):  # one row and one replicate at a time; a few of each
        streamed = bootstrap_cosines(vec.vectors, mixed.chunk({"stimulus": 13}), budget_mb=budget, **kwargs)
        np.testing.assert_allclose(streamed.values, whole.values, rtol=0, atol=1e-10)
    lazy = bootstrap_cosines(vec.vectors, mixed.chunk({"stimulus": 13}), **kwargs)  # within the budget: one read
    np.testing.assert_array_equal(lazy.values, whole.values)
