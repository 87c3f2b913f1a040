"""Implicit scenarios and intensity templates on planted synthetic activations (no model, no store)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from emovec.analyses.implicit import EXACT_LIMIT, centred_cosine, default_center, run_implicit, run_intensity
from emovec_store.errors import InputError

EMOTIONS = ["joyful", "calm", "furious", "sad", "afraid", "proud"]
LAYERS = [0, 4, 8]
HIDDEN = 32


def _vectors(seed: int = 0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((len(LAYERS), len(EMOTIONS), HIDDEN))
    return xr.DataArray(v, dims=("layer", "emotion", "hidden"), coords={"layer": LAYERS, "emotion": EMOTIONS})


def _center(seed: int = 1) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    return xr.DataArray(5 * rng.standard_normal((len(LAYERS), HIDDEN)), dims=("layer", "hidden"),
                        coords={"layer": LAYERS})


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _pooled(x: np.ndarray, *, emotion: list[str], kind: str, **coords: list) -> xr.DataArray:
    n = x.shape[1]
    all_coords = {"layer": LAYERS, "stimulus": [f"{kind}.{i}" for i in range(n)],
                  "kind": ("stimulus", [kind] * n), "emotion": ("stimulus", emotion)}
    all_coords.update({k: ("stimulus", v) for k, v in coords.items()})
    return xr.DataArray(x.astype(np.float32), dims=("layer", "stimulus", "hidden"), coords=all_coords)


def _scenarios(signal: float, per_emotion: int = 4, seed: int = 2, extra_targets: tuple[str, ...] = ()
               ) -> xr.DataArray:
    """center + signal × unit(target vector) + noise, per layer."""
    rng = np.random.default_rng(seed)
    vec, ctr = _vectors().values, _center().values
    targets = [e for e in EMOTIONS for _ in range(per_emotion)]
    idx = np.array([EMOTIONS.index(t) for t in targets])
    x = ctr[:, None, :] + signal * _unit(vec)[:, idx, :] + 0.3 * rng.standard_normal((len(LAYERS), idx.size, HIDDEN))
    if extra_targets:
        x = np.concatenate([x, ctr[:, None, :] + rng.standard_normal((len(LAYERS), len(extra_targets), HIDDEN))],
                           axis=1)
    return _pooled(x, emotion=targets + list(extra_targets), kind="implicit")


def test_centred_cosine_matches_numpy_and_dask() -> None:
    pooled, vec, ctr = _scenarios(2.0), _vectors(), _center()
    got = centred_cosine(pooled, vec, ctr)
    assert got.dims == ("layer", "stimulus", "emotion")
    x = pooled.values.astype(np.float64) - ctr.values[:, None, :]
    want = np.einsum("lsh,leh->lse", _unit(x), _unit(vec.values))
    np.testing.assert_allclose(got.values, want, atol=1e-6)
    lazy = centred_cosine(pooled.chunk({"stimulus": 5}), vec, ctr)
    np.testing.assert_allclose(lazy.compute().values, got.values, atol=1e-12)
    assert list(got["emotion"].values) == EMOTIONS
    assert list(got["stimulus_emotion"].values) == list(pooled["emotion"].values)


def test_default_center_is_the_row_mean() -> None:
    pooled = _scenarios(1.0)
    ctr = default_center(pooled)
    assert ctr.dims == ("layer", "hidden")
    np.testing.assert_allclose(ctr.values, pooled.values.astype(np.float64).mean(axis=1))


def test_planted_scenarios_are_recovered_with_small_p() -> None:
    pooled = _scenarios(3.0, extra_targets=("unknown", "", "unknown"))
    res = run_implicit(pooled, _vectors(), center=_center(), n_permutations=200, seed=0)
    assert res.n == 24 and res.n_dropped == 3
    assert res.chance_top1 == pytest.approx(1 / 6) and res.chance_top3 == pytest.approx(0.5)
    for top1, top3 in zip(res.top1, res.top3, strict=True):
        assert top1.value == pytest.approx(1.0) and top3.value == pytest.approx(1.0)
        assert top1.p == pytest.approx(1 / 201) and top1.n == 24 and top1.n_permutations == 200
        assert top1.ci[0] > res.chance_top1
        assert top1.null_mean == pytest.approx(1 / 6, abs=0.05)
    np.testing.assert_array_equal(res.hubness.sum("emotion").values, [24] * len(LAYERS))
    np.testing.assert_array_equal(res.confusion.sum(("target", "emotion")).values, [24] * len(LAYERS))
    diag = np.einsum("lee->le", res.confusion.sel(emotion=list(res.confusion["target"].values)).values)
    np.testing.assert_array_equal(diag, 4)


def test_no_structure_gives_a_null() -> None:
    res = run_implicit(_scenarios(0.0, per_emotion=5, seed=14), _vectors(), center=_center(),
                       n_permutations=300, seed=1)
    for top1 in res.top1:
        assert top1.ci[0] <= res.chance_top1 <= top1.ci[1]
        assert top1.p > 0.05
        assert (top1.p * 301) == pytest.approx(round(top1.p * 301))  # (k+1)/(n+1)
    assert np.median([e.p for e in res.top3]) > 0.1


def test_zero_hits_keep_an_honest_interval() -> None:
    """Scenarios pointing away from their target: no hit, p = 1, and the CI still reaches past 0."""
    res = run_implicit(_scenarios(-3.0), _vectors(), center=_center(), n_permutations=99)
    for top1 in res.top1:
        assert top1.value == 0.0 and top1.p == pytest.approx(1.0)
        assert top1.ci[0] == pytest.approx(0.0) and top1.ci[1] > 0.1


def test_centring_removes_a_hub() -> None:
    """A common offset along one vector makes it the answer for everything unless it is centred away."""
    pooled, vec = _scenarios(3.0), _vectors()
    hub_center = _center() + 30 * xr.DataArray(_unit(vec.values)[:, 0, :], dims=("layer", "hidden"),
                                               coords={"layer": LAYERS})
    shifted = pooled + (hub_center - _center())
    uncentred = run_implicit(shifted, vec, center=xr.zeros_like(hub_center), n_permutations=50)
    assert (uncentred.hubness.sel(emotion=EMOTIONS[0]).values == 24).all()
    centred = run_implicit(shifted, vec, center=hub_center, n_permutations=50)
    assert all(e.value > 0.9 for e in centred.top1)


def test_implicit_to_dict_schema() -> None:
    res = run_implicit(_scenarios(3.0), _vectors(), center=_center(), n_permutations=20)
    d = json.loads(json.dumps(res.to_dict()))
    assert set(d) == {"n", "n_dropped", "emotions", "layer", "top1", "top3", "chance_top1", "chance_top3",
                      "hubness", "confusion", "targets"}
    assert d["layer"] == LAYERS and d["emotions"] == EMOTIONS and d["targets"] == EMOTIONS
    assert np.asarray(d["hubness"]).shape == (3, 6) and np.asarray(d["confusion"]).shape == (3, 6, 6)
    assert set(d["top1"][0]) >= {"value", "ci", "n", "p"}


def test_implicit_errors() -> None:
    pooled = _scenarios(1.0)
    with pytest.raises(InputError, match="lack layers"):
        run_implicit(pooled, _vectors(), center=_center().isel(layer=[0]))
    with pytest.raises(InputError, match="no scenario"):
        run_implicit(pooled.assign_coords(emotion=("stimulus", ["x"] * pooled.sizes["stimulus"])), _vectors(),
                     center=_center())
    with pytest.raises(InputError, match="no implicit stimuli"):
        run_implicit(pooled.assign_coords(kind=("stimulus", ["story"] * pooled.sizes["stimulus"])), _vectors(),
                     center=_center())


def _intensity(slope: float, templates: dict[str, tuple[str, int]], seed: int = 3) -> xr.DataArray:
    """Per template (target, n_levels): center + a fixed offset + slope × level × unit(target) + noise.

    The offset keeps the cosine far from saturation, so it rises with the level at every step.
    """
    rng = np.random.default_rng(seed)
    vec, ctr = _unit(_vectors().values), _center().values
    cols, emotion, template, level = [], [], [], []
    for name, (target, n_levels) in templates.items():
        offset = 3 * _unit(rng.standard_normal((len(LAYERS), HIDDEN)))
        direction = vec[:, EMOTIONS.index(target)] if target in EMOTIONS else offset
        for lv in range(1, n_levels + 1):
            noise = 0.05 * rng.standard_normal((len(LAYERS), HIDDEN))
            cols.append(ctr + offset + 0.3 * slope * lv * direction + noise)
            emotion.append(target)
            template.append(name)
            level.append(lv)
    return _pooled(np.stack(cols, axis=1), emotion=emotion, kind="intensity", template=template, level=level)


TEMPLATES = {"cliff": ("afraid", 6), "lottery": ("joyful", 6), "audit": ("calm", 6)}


def test_planted_intensity_is_monotone_with_exact_p() -> None:
    pooled = _intensity(4.0, TEMPLATES)
    res = run_intensity(pooled, _vectors(), center=_center(), n_permutations=200, seed=0)
    assert res.templates == ("cliff", "lottery", "audit")
    assert res.target == {"cliff": "afraid", "lottery": "joyful", "audit": "calm"}
    for t in res.templates:
        for e in res.rho[t]:
            assert e.value == pytest.approx(1.0) and e.n == 6
            assert e.n_permutations == 719 and e.p == pytest.approx(1 / 720)  # exact: only the identity
    for e in res.mean_rho:
        assert e.value == pytest.approx(1.0) and e.n == 3
        assert e.p == pytest.approx(1 / 201)
    curves = res.curves.sel(template="cliff")
    assert curves.dims == ("layer", "level")
    assert (np.diff(curves.values, axis=-1) > 0).all()


def test_intensity_noise_is_null() -> None:
    res = run_intensity(_intensity(0.0, TEMPLATES, seed=5), _vectors(), center=_center(), n_permutations=300,
                        seed=2)
    for e in res.mean_rho:
        assert e.p * 301 == pytest.approx(round(e.p * 301))
        assert e.ci[0] <= 0 <= e.ci[1]
    assert np.median([e.p for e in res.mean_rho]) > 0.1
    exact_ps = [e.p for t in res.templates for e in res.rho[t]]
    assert all(p * 720 == pytest.approx(round(p * 720)) for p in exact_ps)


def test_intensity_random_permutations_drops_and_schema() -> None:
    assert np.prod(range(1, 10)) > EXACT_LIMIT
    templates = {"long": ("sad", 9), "short": ("proud", 2), "foreign": ("bored", 5)}
    res = run_intensity(_intensity(4.0, templates), _vectors(), center=_center(), n_permutations=150, seed=0)
    assert res.templates == ("long",)
    assert set(res.dropped) == {"short", "foreign"}
    for e in res.rho["long"]:
        assert e.value == pytest.approx(1.0) and e.n_permutations == 150 and e.p == pytest.approx(1 / 151)
    assert res.mean_rho[0].ci == res.rho["long"][0].ci
    d = json.loads(json.dumps(res.to_dict()))
    assert set(d) == {"templates", "target", "levels", "layer", "rho", "mean_rho", "curves"}
    assert d["levels"] == {"long": list(range(1, 10))}
    assert np.asarray(d["curves"]["long"]).shape == (3, 9)


def test_intensity_needs_one_target_per_template() -> None:
    pooled = _intensity(1.0, {"cliff": ("afraid", 4)})
    mixed = pooled.assign_coords(emotion=("stimulus", ["afraid", "calm", "afraid", "afraid"]))
    with pytest.raises(InputError, match="target emotions"):
        run_intensity(mixed, _vectors(), center=_center())
    with pytest.raises(InputError, match="template"):
        run_intensity(pooled.drop_vars("template"), _vectors(), center=_center())


def test_vectors_from_stories_score_their_own_scenarios() -> None:
    """End to end on the vectors module: vectors fitted on planted stories, scenarios scored against them."""
    from emovec.analyses.vectors import emotion_vectors

    rng = np.random.default_rng(8)
    directions = _unit(_vectors().values)
    labels = [e for e in EMOTIONS for _ in range(10)]
    idx = np.array([EMOTIONS.index(e) for e in labels])
    x = _center().values[:, None, :] + 2 * directions[:, idx] + 0.5 * rng.standard_normal((3, idx.size, HIDDEN))
    vecs = emotion_vectors(_pooled(x, emotion=labels, kind="story"), denoise=None)
    center = vecs.means.mean("emotion")
    res = run_implicit(_scenarios(3.0), vecs, center=center, n_permutations=99)
    assert all(e.value > 0.9 and e.p == pytest.approx(1 / 100) for e in res.top1)
