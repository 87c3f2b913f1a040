"""Layers summary (cross-layer RSA, default layer, lexical floor, norm check) and the logit lens, synthetic."""
from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from emovec.analyses.layers import (
    cross_layer_rsa,
    default_layer,
    floor_rise,
    norm_confound_check,
    row_correlations,
    run_layers,
)
from emovec.analyses.lens import logit_lens
from emovec.analyses.stats import Estimate
from emovec_store.errors import InputError

EMOTIONS = ["joyful", "calm", "furious", "sad", "afraid"]


def _cosines(matrices: np.ndarray, layers: list[int]) -> xr.DataArray:
    return xr.DataArray(matrices, dims=("layer", "emotion", "emotion_b"),
                        coords={"layer": layers, "emotion": EMOTIONS, "emotion_b": EMOTIONS})


def _random_cosines(n_layers: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n_layers, len(EMOTIONS), 12))
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    return np.einsum("leh,lfh->lef", v, v)


def test_rsa_of_identical_matrices_is_one_and_symmetric() -> None:
    same = np.repeat(_random_cosines(1), 4, axis=0)
    rsa = cross_layer_rsa(_cosines(same, [0, 2, 4, 6]))
    assert rsa.dims == ("layer", "layer_b") and list(rsa["layer_b"].values) == [0, 2, 4, 6]
    np.testing.assert_allclose(rsa.values, 1.0)
    mixed = cross_layer_rsa(_cosines(_random_cosines(4, seed=3), [0, 2, 4, 6])).values
    np.testing.assert_allclose(mixed, mixed.T)
    np.testing.assert_allclose(np.diag(mixed), 1.0)
    assert (np.abs(mixed[~np.eye(4, dtype=bool)]) < 1).all()


def test_rsa_is_rank_based_and_constant_layers_are_nan() -> None:
    base = _random_cosines(1)[0]
    monotone = np.sign(base) * base**2  # a monotone transform of every entry: same ranks
    constant = np.ones_like(base)
    rsa = cross_layer_rsa(_cosines(np.stack([base, monotone, constant]), [0, 1, 2])).values
    assert rsa[0, 1] == pytest.approx(1.0)
    assert np.isnan(rsa[2]).all() and np.isnan(rsa[:, 2]).all()
    with pytest.raises(InputError, match="emotion_b"):
        cross_layer_rsa(xr.DataArray(np.zeros((2, 3, 3)), dims=("layer", "emotion", "other")))


def test_row_correlations_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((3, 9)), rng.standard_normal((4, 9))
    np.testing.assert_allclose(row_correlations(a, b), np.corrcoef(a, b)[:3, 3:])
    assert np.isnan(row_correlations(np.ones((1, 9)), b)).all()


def test_default_layer_is_two_thirds_of_depth() -> None:
    assert default_layer(range(31)) == 20  # SmolLM2-135M: hidden_states 0..30
    assert default_layer(range(19)) == 12  # Gemma-3-270M: 0..18
    assert default_layer([0, 5, 10], max_layer=30) == 10
    assert default_layer([18, 22], max_layer=30) == 18  # tie → shallower
    with pytest.raises(InputError):
        default_layer([])


def test_floor_rise_is_the_difference_to_the_embedding_layer() -> None:
    values = [Estimate(0.4, (0.3, 0.5), 10), Estimate(0.5, (0.4, 0.6), 10), Estimate(0.7, (0.6, 0.8), 10)]
    rise = floor_rise(values, [0, 1, 2])
    np.testing.assert_allclose(rise.sel(layer=[0, 1, 2]).values, [0.0, 0.1, 0.3])
    with pytest.raises(InputError, match="not among"):
        floor_rise(values, [1, 2, 3])


def test_norm_check_flags_a_monotone_function_of_the_norm() -> None:
    norm = np.linspace(1, 40, 12) ** 1.3
    rng = np.random.default_rng(4)
    checks = norm_confound_check({"raw_separation": list(np.log(norm)), "noise": list(rng.standard_normal(12)),
                                  "flat": [0.5] * 12, "inverse": list(1 / norm)}, list(norm))
    by_name = {c["metric"]: c for c in checks}
    assert by_name["raw_separation"] == {"metric": "raw_separation", "rho": pytest.approx(1.0), "flagged": True}
    assert by_name["inverse"]["rho"] == pytest.approx(-1.0) and by_name["inverse"]["flagged"]
    assert not by_name["noise"]["flagged"] and abs(by_name["noise"]["rho"]) < 0.8
    assert by_name["flat"] == {"metric": "flat", "rho": None, "flagged": False}


def test_run_layers_summary_and_schema() -> None:
    layers = list(range(7))
    accuracy = [Estimate(v, (v - 0.05, v + 0.05), 100, p=0.001) for v in (0.3, 0.35, 0.5, 0.6, 0.55, 0.52, 0.4)]
    r_valence = [Estimate(v, (v - 0.1, v + 0.1), 24) for v in (0.6, 0.6, 0.62, 0.63, 0.64, 0.66, 0.7)]
    mean_norm = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    res = run_layers(_cosines(_random_cosines(7, seed=2), layers), {"accuracy": accuracy, "r_valence": r_valence},
                     mean_norm, layers)
    assert res.default_layer == 4
    acc = res.summary[0]
    assert (acc.metric, acc.best_layer, acc.best, acc.default, acc.floor) == ("accuracy", 3, accuracy[3],
                                                                             accuracy[4], accuracy[0])
    assert acc.rise_above_floor == pytest.approx(0.25)
    assert [c["flagged"] for c in res.norm_check] == [False, True]
    d = json.loads(json.dumps(res.to_dict()))
    assert set(d) == {"layer", "rsa", "default_layer", "summary", "norm_check"}
    assert np.asarray(d["rsa"]).shape == (7, 7) and d["layer"] == layers
    assert set(d["summary"][0]) == {"metric", "best_layer", "best", "default", "floor", "rise_above_floor"}
    assert d["summary"][0]["default"]["ci"] == pytest.approx([0.5, 0.6])


def test_run_layers_without_the_embedding_layer_has_no_floor() -> None:
    layers = [10, 20, 30]
    values = [Estimate(0.1, (0.0, 0.2), 5), Estimate(0.2, (0.1, 0.3), 5), Estimate(0.3, (0.2, 0.4), 5)]
    res = run_layers(_cosines(_random_cosines(3), layers), {"m": values}, [1.0, 2.0, 3.0], layers)
    assert res.default_layer == 20 and res.summary[0].floor is None and res.summary[0].rise_above_floor is None
    assert res.norm_check[0]["flagged"]
    with pytest.raises(InputError, match="lack layers"):
        run_layers(_cosines(_random_cosines(3), [0, 1, 2]), {"m": values}, [1.0, 2.0, 3.0], layers)
    with pytest.raises(InputError, match="values for"):
        run_layers(_cosines(_random_cosines(3), layers), {"m": values[:2]}, [1.0, 2.0, 3.0], layers)


def _lens_setup() -> tuple[xr.DataArray, np.ndarray]:
    rng = np.random.default_rng(5)
    w = rng.standard_normal((50, 16))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    v = rng.standard_normal((2, len(EMOTIONS), 16))
    v[1, 0] = 3 * w[7]  # layer 9, joyful: aligned with token 7's row
    vectors = xr.DataArray(v, dims=("layer", "emotion", "hidden"), coords={"layer": [3, 9], "emotion": EMOTIONS})
    return vectors, w


def test_logit_lens_puts_the_aligned_token_first() -> None:
    vectors, w = _lens_setup()
    res = logit_lens(vectors, w, final_norm=None, decode=lambda i: f"tok{i}", k=5)
    assert res.top_ids.sel(layer=9, emotion="joyful").values[0] == 7
    assert res.top.sel(layer=9, emotion="joyful").values[0] == "tok7"
    logits = w @ vectors.sel(layer=3, emotion="sad").values
    np.testing.assert_array_equal(res.top_ids.sel(layer=3, emotion="sad").values, np.argsort(-logits)[:5])
    np.testing.assert_array_equal(res.bottom_ids.sel(layer=3, emotion="sad").values, np.argsort(logits)[:5])
    d = json.loads(json.dumps(res.to_dict()))
    assert set(d) == {"layer", "k", "emotions", "top", "bottom"}
    assert d["layer"] == [3, 9] and d["k"] == 5 and d["emotions"] == EMOTIONS
    assert d["top"]["joyful"][1][0] == "tok7" and len(d["bottom"]["sad"]) == 2 and len(d["bottom"]["sad"][0]) == 5


def test_logit_lens_applies_the_final_norm() -> None:
    vectors, w = _lens_setup()
    res = logit_lens(vectors, w, final_norm=lambda x: -x, decode=str, k=3)
    assert res.bottom_ids.sel(layer=9, emotion="joyful").values[0] == 7
    with pytest.raises(InputError, match="unembedding"):
        logit_lens(vectors, w[:, :8], final_norm=None, decode=str)
    with pytest.raises(InputError, match="final_norm"):
        logit_lens(vectors, w, final_norm=lambda x: x[:, :4], decode=str)
