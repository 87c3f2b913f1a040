"""Compare: linear CKA's invariances, RSA's permutation p, and refusing stores with no shared stimuli."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from click.testing import CliRunner

import emovec_store
from emovec.analyses import compare as cmp
from emovec.cli.main import cli
from emovec_store.derived import write_derived
from emovec_store.errors import InputError
from tests.analysis_store import EMOTIONS, make_analysis_store


def test_cka_of_a_representation_with_itself_and_a_rotation_of_itself_is_one() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 12))
    rotation = np.linalg.qr(rng.standard_normal((12, 12)))[0]
    assert cmp.linear_cka(x, x) == pytest.approx(1.0)
    assert cmp.linear_cka(x, 3.0 * x @ rotation) == pytest.approx(1.0)
    y = rng.standard_normal((50, 7))
    assert cmp.linear_cka(x, y) == pytest.approx(cmp.linear_cka(x @ rotation, y))
    assert cmp.linear_cka(x, y) < 0.5


def test_rsa_finds_the_same_geometry_and_not_a_random_one() -> None:
    rng = np.random.default_rng(1)
    v = rng.standard_normal((8, 20))
    a = cmp.cosine_matrix(v)
    same = cmp.rsa(a, cmp.cosine_matrix(v @ np.linalg.qr(rng.standard_normal((20, 20)))[0]), n_permutations=199)
    assert same.r == pytest.approx(1.0) and same.p == pytest.approx(1 / 200)
    other = cmp.rsa(a, cmp.cosine_matrix(rng.standard_normal((8, 20))), n_permutations=199)
    assert other.r < 0.8 and other.p > 0.01
    with pytest.raises(InputError, match="3 or more"):
        cmp.rsa(a[:2, :2], a[:2, :2])


def _with_vectors(path: Path, seed: int) -> emovec_store.Store:
    st = make_analysis_store(path, n_layers=3, hidden=24, seed=seed)
    rng = np.random.default_rng(seed)
    raw = xr.DataArray(rng.standard_normal((3, len(EMOTIONS), 24)), dims=("layer", "emotion", "hidden"),
                       coords={"layer": [0, 1, 2], "emotion": list(EMOTIONS)})
    write_derived(st, "m", "vectors", xr.Dataset({"raw": raw}), provenance={"readout": "mean_from_50"})
    return st


def test_cli_compares_two_stores(tmp_path: Path) -> None:
    _with_vectors(tmp_path / "a.zarr", 0)
    _with_vectors(tmp_path / "b.zarr", 0)
    out = tmp_path / "cmp"
    res = CliRunner().invoke(cli, ["compare", str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr"),
                                   "--permutations", "99", "--out", str(out)])
    assert res.exit_code == 0, res.output
    cka = pd.read_csv(out / "cka.csv")
    diag = cka[cka["layer_a"] == cka["layer_b"]]["cka"]
    assert np.allclose(diag, 1.0)  # the same data in both stores
    assert (out / "cka.png").read_bytes()[:4] == b"\x89PNG"
    assert "rsa r +1.000" in res.output


def test_stores_with_no_shared_stimuli_are_refused(tmp_path: Path) -> None:
    a = _with_vectors(tmp_path / "a.zarr", 0)
    table = pd.DataFrame({"stimulus": ["x1", "x2"], "text": ["a", "b"], "kind": "story", "emotion": "sad"})
    b = emovec_store.create(tmp_path / "b.zarr", table)
    b.add_model("m", {"model": "m"})
    b.add_readout("m", "mean_from_50", stimulus_ids=["x1", "x2"], layers=[0], hidden=4, storage_dtype="float32",
                  batches=[(0, 2)], chunk_rows=2, n_tokens=[3, 3], attrs={"spec": "mean_from_50"})
    with b.writer("m", "mean_from_50") as writer:
        for batch in writer.pending():
            writer.write(batch, np.ones((1, 2, 4), np.float32))
    b.finalize()
    with pytest.raises(InputError, match="share no stimuli"):
        cmp.shared_stimuli([(a, "m"), (emovec_store.open(tmp_path / "b.zarr"), "m")])
    res = CliRunner().invoke(cli, ["compare", str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr")])
    assert res.exit_code == 2 and "share no stimuli" in res.output


def _with_planted_vectors(path: Path, *, structure: bool = True,
                          languages: tuple[str, ...] = ("en",)) -> emovec_store.Store:
    """A store whose vectors are the class means of its English stories (the planted circumplex)."""
    from emovec import analyses

    st = make_analysis_store(path, n_layers=4, hidden=24, structure=structure, languages=languages)
    data = analyses.open_readout(st, "m", "mean_from_50")
    stories = analyses.select(data.pooled, kinds=["story"], language="en", labelled=True)
    vec = analyses.emotion_vectors(stories, denoise=None).vectors
    write_derived(st, "m", "vectors", xr.Dataset({"raw": vec}), provenance={"readout": "mean_from_50"})
    return st


def test_alignment_recovers_the_planted_valence_axis_and_not_noise(tmp_path: Path) -> None:
    st = _with_planted_vectors(tmp_path / "a.zarr")
    a = cmp.norm_alignment(st, "m", list(EMOTIONS), n_permutations=199, seed=0)
    assert a.layers == (0, 1, 2, 3) and a.default_layer == 2 and len(a.emotions) == len(EMOTIONS)
    top = a.valence[-1]
    assert top.value > 0.8 and top.p is not None and top.p <= 0.02
    assert top.ci is not None and top.ci[0] < top.value < top.ci[1]
    assert a.arousal[-1].value > 0.8
    noise = cmp.norm_alignment(_with_planted_vectors(tmp_path / "n.zarr", structure=False), "m", list(EMOTIONS),
                               n_permutations=199, seed=0)
    assert noise.valence[-1].p is not None and noise.valence[-1].p > 0.05
    with pytest.raises(InputError, match="need 4 or more"):
        cmp.norm_alignment(st, "m", ["joyful", "sad", "calm"], n_permutations=19)


def test_the_norm_check_flags_a_metric_that_tracks_the_vector_norm() -> None:
    from emovec.analyses.stats import Estimate

    rising = tuple(Estimate(value=v) for v in (0.1, 0.3, 0.5, 0.7))
    flat = tuple(Estimate(value=v) for v in (0.4, 0.1, 0.5, 0.2))
    a = cmp.Alignment(model="m", layers=(0, 1, 2, 3), emotions=tuple(EMOTIONS), valence=rising, arousal=flat,
                      mean_norm=(1.0, 2.0, 3.0, 4.0), default_layer=2)
    rows = {r["metric"]: r for r in cmp.norm_check(a)}
    assert rows["cv_valence"]["flagged"] and rows["cv_valence"]["rho"] == pytest.approx(1.0)
    assert not rows["cv_arousal"]["flagged"]


def test_english_to_chinese_transfer_of_a_shared_structure_and_of_noise(tmp_path: Path) -> None:
    from emovec.analyses.transfer import language_transfer, parse_languages

    st = make_analysis_store(tmp_path / "a.zarr", n_layers=3, languages=("en", "zh"))
    t = language_transfer(st, "m", n_bootstrap=200, n_permutations=199)
    assert (t.n_source, t.n_target, len(t.classes)) == (48, 48, 8) and t.chance == pytest.approx(1 / 8)
    assert t.transfer[-1].value > 0.8 and t.transfer[-1].p == pytest.approx(1 / 200)
    assert t.within_source[-1].value > 0.8 and t.within_target[-1].value > 0.8
    assert t.transfer_centred[-1].value > 0.8
    assert t.transfer[0].value < 0.4  # layer 0 carries no structure
    noise = language_transfer(make_analysis_store(tmp_path / "n.zarr", n_layers=3, structure=False,
                                                  languages=("en", "zh")), "m", n_bootstrap=200, n_permutations=199)
    assert noise.transfer[-1].value < 0.4 and noise.transfer[-1].p is not None and noise.transfer[-1].p > 0.01
    with pytest.raises(InputError, match="no labelled 'zh' stories; extract with --language en --language zh"):
        language_transfer(make_analysis_store(tmp_path / "en.zarr", n_layers=2), "m", n_permutations=19)
    assert parse_languages("en:zh") == ("en", "zh")
    for bad in ("en", "en:en", "en:zh:fr", ":zh"):
        with pytest.raises(InputError, match="--transfer"):
            parse_languages(bad)


def test_centring_each_language_removes_a_language_offset(tmp_path: Path) -> None:
    from emovec.analyses.transfer import language_transfer

    st = make_analysis_store(tmp_path / "a.zarr", n_layers=3, languages=("en", "zh"), language_offset=25.0)
    t = language_transfer(st, "m", n_bootstrap=50, n_permutations=99)
    assert t.transfer_centred[-1].value > 0.8 > t.transfer[-1].value
    assert t.within_target[-1].value > 0.8  # within one language the offset is a constant


def test_cli_on_one_store_writes_alignment_transfer_and_norm_check(tmp_path: Path) -> None:
    _with_planted_vectors(tmp_path / "a.zarr", languages=("en", "zh"))
    out = tmp_path / "cmp"
    res = CliRunner().invoke(cli, ["compare", str(tmp_path / "a.zarr"), "--permutations", "99", "--bootstrap", "50",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "CV r valence" in res.output and "en->zh" in res.output and "skipped rsa_cka" in res.output
    alignment = pd.read_csv(out / "alignment.csv")
    assert set(alignment["norm"]) == {"valence", "arousal"} and alignment["default_layer"].sum() == 2
    transfer = pd.read_csv(out / "transfer.csv")
    assert set(transfer["accuracy"]) == {"transfer", "transfer_centred", "within_source", "within_target"}
    checks = pd.read_csv(out / "norm_check.csv")
    assert set(checks["metric"]) >= {"cv_valence", "cv_arousal", "transfer_accuracy"}
    for png in ("alignment.png", "transfer.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    payload = json.loads((out / "results.json").read_text())
    assert payload["transfer"][0]["source"] == "en" and payload["rsa"] == []
